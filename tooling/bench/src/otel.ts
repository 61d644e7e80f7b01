// `OTEL=1 pnpm bench …`: runs the suites with @cyredis/otel active, its spans and metrics going to an SDK.
import { context } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, BatchSpanProcessor, type ReadableSpan, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import { instrument } from '@cyredis/otel';

/** Drops what it is given: the cost measured is making and batching spans, not shipping them. */
const discard: SpanExporter = {
  export: (_spans: ReadableSpan[], done) => done({ code: 0 }),
  shutdown: () => Promise.resolve(),
};

/** A reader nobody collects from: the instruments still aggregate every measurement. */
class IdleReader extends MetricReader {
  protected onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
  protected onShutdown(): Promise<void> {
    return Promise.resolve();
  }
}

/** Sets up an SDK the way an application would and enables the instrumentation; resolves a stop function. */
export function startOtel(): () => Promise<void> {
  const contextManager = new AsyncLocalStorageContextManager().enable();
  context.setGlobalContextManager(contextManager);
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new BatchSpanProcessor(discard)] });
  const meterProvider = new MeterProvider({ readers: [new IdleReader()] });
  const instrumentation = instrument({ tracerProvider, meterProvider });
  return async () => {
    instrumentation.disable();
    await Promise.all([tracerProvider.shutdown(), meterProvider.shutdown()]);
    context.disable();
  };
}
