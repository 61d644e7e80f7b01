// The public surface of @cyredis/dashboard: the request handler, the standalone server, their options.
export { createDashboard, type DashboardHandler, type DashboardOptions, type DashboardRequest, type Throughput } from './dashboard.js';
export { serveDashboard, type DashboardServer, type ServeOptions } from './server.js';
export { CyRedisError, InvalidArgumentError } from '@cyredis/core';
