export { freePort } from './ports.js';
export { randomPrefix } from './prefix.js';
export { FaultProxy } from './proxy.js';
export { RedisServer, REDIS_SERVER_MISSING, type ServerOptions } from './server.js';
export { RedisClusterHandle, startCluster, startIndependent, startPrivate, startReplicated, type ClusterSpec, type PrivateTopology } from './topology.js';
export { sleep, waitFor, type WaitOptions } from './wait.js';
export { SENTINEL_MASTER_NAME, SentinelGroup, startSentinelGroup } from './sentinel.js';
export { testCertificates, type TlsFiles } from './tls.js';
export { traceKeys, tracingSource, undeclaredKeys, type KeyTrace } from './keys.js';
