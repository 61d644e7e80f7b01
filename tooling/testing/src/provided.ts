// Values the global setup hands to every test file through vitest's provide/inject.
declare module 'vitest' {
  export interface ProvidedContext {
    /** The single node every integration test uses. */
    redisUrl: string;
    /** Seed nodes of the 3-master cluster. */
    clusterSeeds: { host: string; port: number }[];
  }
}

export {};
