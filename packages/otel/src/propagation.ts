// The trace context a job carries: the global propagator's fields, or W3C `traceparent` when none is set up.
import { isSpanContextValid, propagation, ROOT_CONTEXT, trace, type Context, type SpanContext } from '@opentelemetry/api';

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** The propagation fields of `ctx`'s span: the global propagator's, else a W3C `traceparent` of its own. */
export function inject(ctx: Context): Record<string, string> | undefined {
  const carrier: Record<string, string> = {};
  propagation.inject(ctx, carrier);
  if (Object.keys(carrier).length > 0) return carrier;
  // The API's default propagator writes nothing; a link needs only the span's ids.
  const span = trace.getSpanContext(ctx);
  if (span === undefined || !isSpanContextValid(span)) return undefined;
  return { traceparent: `00-${span.traceId}-${span.spanId}-${(span.traceFlags & 0xff).toString(16).padStart(2, '0')}` };
}

/** The span context the fields describe, through the global propagator, else a W3C `traceparent`. */
export function extract(carrier: Record<string, string>): SpanContext | undefined {
  const found = trace.getSpanContext(propagation.extract(ROOT_CONTEXT, carrier));
  if (found !== undefined && isSpanContextValid(found)) return found;
  const match = TRACEPARENT.exec(carrier.traceparent ?? '');
  if (match === null) return undefined;
  const parsed: SpanContext = { traceId: match[1]!, spanId: match[2]!, traceFlags: Number.parseInt(match[3]!, 16), isRemote: true };
  return isSpanContextValid(parsed) ? parsed : undefined;
}
