export {
  CrossSlotError,
  CyRedisError,
  InvalidArgumentError,
  RedisTimeoutError,
  RedisUnavailableError,
  ScriptError,
  UnknownScriptError,
} from './errors.js';
export { TickBatcher, type BatchSend } from './batch.js';
export { defaultCodec, type Codec } from './codec.js';
export { waitAtMost, withDeadline } from './deadline.js';
export { warnIfEvicting } from './eviction.js';
export { DEFAULT_PREFIX, escapeId, KeySpace, unescapeId } from './keys.js';
export { readPackageLua, scriptName } from './lua.js';
export { classifyError, isOutage, type ErrorContext } from './outage.js';
export { PubSubSubscriber, type SubscriberEvents } from './subscriber.js';
export { clientKeyPrefix, duplicateClient, isCluster, type RedisClient } from './client.js';
export { LuaScriptManager, type RegisteredScript, type RegisterOptions, type ScriptCall } from './manager.js';
export { pairsToRecord, toArray, toBigInt, toNumber, toOptionalString } from './reply.js';
export {
  assertByteLength,
  assertFiniteNumber,
  assertInteger,
  assertTimeoutMs,
  durationMs,
  optionalMs,
  MAX_TIMEOUT_MS,
  type DurationBounds,
  assertNonEmptyString,
  assertOneOf,
  assertOptions,
  assertRedisClient,
  assertWellFormed,
  nearestName,
  assertPositiveMs,
  assertScriptArg,
  MAX_ID_LENGTH,
  type NumberBounds,
  type ScriptArg,
} from './validate.js';
export {
  assertRegistryPage,
  listRegistered,
  listRegistry,
  NameRecorder,
  registryKey,
  REGISTRY_MAX_ENTRIES,
  REGISTRY_REFRESH_MS,
  REGISTRY_TTL_MS,
  type RecorderBounds,
  type RegistryEntry,
  type RegistryListOptions,
  type RegistryPage,
} from './registry.js';
