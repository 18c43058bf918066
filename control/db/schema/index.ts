export * from './users.js';
export * from './keys.js';
export * from './nodes.js';
export * from './exposures.js';
export * from './leases.js';
export * from './connections.js';
