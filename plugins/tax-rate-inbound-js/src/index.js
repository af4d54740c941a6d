// The seed's inbound handler, in JavaScript: a state agency's webhook
// `{"currentRate", "taxYear"}` becomes an HMS `tax.rate.updated` event `{"rate", "year"}`, keyed
// by the tax year. The route may set `event-type` in its plugin config to emit another type.

import { config, emit, json, log } from '@hms/sync-sdk';

export function handle(event) {
  const { currentRate, taxYear } = json(event, { currentRate: 'number', taxYear: 'integer' });
  const eventType = config.get('event-type') ?? 'tax.rate.updated';
  log.debug(`tax year ${taxYear} from ${event.origin}`);
  return [emit(eventType, { rate: currentRate, year: taxYear }, { key: `tax-rate/${taxYear}` })];
}
