// {{name}}: a handler for the HMS Synchronization Engine. It turns a payload
// `{"firstName", "lastName"}` into a delivery of `{"fullName"}` to the destination the route's
// `destination` setting names (default `contacts`), and drops events without a last name.
// Change the shape and the actions to yours.

import { config, deliver, drop, json, log } from '@hms/sync-sdk';

export function handle(event) {
  const person = json(event, { firstName: 'string', lastName: 'string?' });
  if (person.lastName == null) return [drop('no last name')];
  log.info(`contact for event ${event.id}`);
  const destination = config.get('destination') ?? 'contacts';
  return [deliver(destination, { fullName: `${person.firstName} ${person.lastName}` })];
}
