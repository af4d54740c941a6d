// The seed's outbound transformer, in JavaScript: an HMS `tax.rate.updated` payload
// `{"rate", "year"}` becomes the state tax API's body `{"newRates", "effectiveYear"}`.
// The route in the engine's configuration says which destination receives the result.

import { json } from '@hms/sync-sdk';

export function transform(event) {
  const { rate, year } = json(event, { rate: 'number', year: 'integer' });
  return { newRates: rate, effectiveYear: year };
}
