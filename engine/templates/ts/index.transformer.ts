// {{name}}: a transformer for the HMS Synchronization Engine. It maps a payload
// `{"firstName", "lastName"}` to `{"fullName"}`; the route in the engine's configuration says
// where the result goes. Change the shape and the mapping to yours.

import { json, type Event } from '@hms/sync-sdk';

interface Contact {
  fullName: string;
}

export function transform(event: Event): Contact {
  // A missing or mistyped field is `invalid-input`, naming the field.
  const person = json(event, { firstName: 'string', lastName: 'string' });
  return { fullName: `${person.firstName} ${person.lastName}` };
}
