// Types of @runstream/device (src/index.js). Hand-written: the package has no build step.

export declare const SUBPROTOCOL: 'runstream.device.v1';

export interface ConnectOptions {
  /** ws://host:port/v1/devices/connect */
  url: string;
  /** [a-z0-9_-]{1,64}, the one the token was issued for */
  deviceId: string;
  /** from `runctl devices token --tenant T --device D` */
  token: string;
  /** first reconnect delay (default 100); doubles per failed attempt, with jitter */
  backoffMinMs?: number;
  /** reconnect delay cap (default 10000) */
  backoffMaxMs?: number;
  /** call ids remembered for de-duplication (default 512) */
  cacheSize?: number;
  /** larger outputs become a `result_too_large` error (default 1 MiB, the router's frame cap) */
  maxResultBytes?: number;
  /** Node only: largest frame accepted from the router (default 16 MiB) */
  maxFrameBytes?: number;
  /** logger; default prints info/warn/error to console.error */
  log?: (level: 'debug' | 'info' | 'warn' | 'error', message: string) => void;
  /** a WebSocket constructor to use instead of `ws` (Node) or the native one (browser) */
  WebSocket?: unknown;
}

export interface ToolSpec {
  description?: string;
  /** JSON Schema (2020-12) the args must satisfy; checked before the handler runs */
  inputSchema?: object;
}

export interface CallContext {
  readonly callId: string;
  readonly runId: string;
  readonly stepId: string;
  readonly tool: string;
  /** 1 for the first attempt of the step; a retry is a new call_id */
  readonly attempt: number;
  readonly deadline: Date | null;
  /** aborted by tool.cancel, the deadline, or a shutdown that ran out of time */
  readonly signal: AbortSignal;
}

export type ToolHandler = (args: any, ctx: CallContext) => unknown | Promise<unknown>;

export declare class ToolError extends Error {
  constructor(code: string, message: string, opts?: { retryable?: boolean });
  readonly code: string;
  readonly retryable: boolean;
}

export declare class DeviceError extends Error {
  /** 'unauthorized' (4401), 'replaced' (4409) or 'bad_url' */
  readonly code: string;
  readonly closeCode: number;
}

export declare class Device {
  readonly deviceId: string;
  readonly connected: boolean;
  /** resolves with the first welcome frame */
  readonly ready: Promise<{ type: 'welcome'; device_id: string; tenant: string; heartbeat_s: number }>;
  /** resolves after close(); rejects with a DeviceError when the router ends the device for good */
  readonly closed: Promise<void>;
  readonly stats: { executions: number; cacheHits: number; cancels: number; invalidArgs: number; reconnects: number };
  tool(name: string, spec: ToolSpec, handler: ToolHandler): this;
  tool(name: string, handler: ToolHandler): this;
  close(opts?: { timeoutMs?: number }): Promise<void>;
}

export declare function connect(opts: ConnectOptions): Device;
