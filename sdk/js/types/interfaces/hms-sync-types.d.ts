// Generated from wit/sync.wit by scripts/types.js (`npm run types`): do not edit.
declare module 'hms:sync/types@0.1.0' {
  /**
   * One header: a name and a value.
   */
  export interface Header {
    /**
     * The header name. Inbound header names are lower-case; names a plugin sets are
     * checked by the engine and must be valid HTTP header names.
     */
    name: string,
    /**
     * The header value. It must be a valid HTTP header value (visible ASCII, spaces, tabs).
     */
    value: string,
  }
  /**
   * One change event, as the engine accepted and stored it.
   */
  export interface Event {
    /**
     * The id the engine gave the event when it accepted it. It never changes, so a plugin
     * may use it to build idempotency keys.
     */
    id: string,
    /**
     * The event type, such as `tax.rate.updated`. For a webhook it is the type the route
     * gives its events.
     */
    eventType: string,
    /**
     * The system the event came from: `hms` for the HMS bus, otherwise the name of the
     * external system whose webhook delivered it.
     */
    origin: string,
    /**
     * The key of the entity the event is about (such as `tax-rate/2025`), when known.
     */
    key?: string,
    /**
     * The version of that entity after the change, when known. Larger is newer.
     */
    version?: bigint,
    /**
     * When the change happened, in milliseconds since the Unix epoch (UTC).
     */
    timestamp: bigint,
    /**
     * The media type of `payload`, such as `application/json`.
     */
    contentType: string,
    /**
     * The payload, byte for byte as the engine received it.
     */
    payload: Uint8Array,
    /**
     * The headers of the inbound request that the route lets plugins see, with lower-case
     * names. Empty for events from the HMS bus.
     */
    headers: Array<Header>,
  }
  /**
   * What kind of failure a plugin reports.
   * # Variants
   * 
   * ## `"invalid-input"`
   * 
   * The event is not what the plugin can read: bad JSON, a missing or mistyped field.
   * The message should name the field.
   * ## `"rejected"`
   * 
   * The event is readable but the plugin refuses it on purpose (a business rule).
   * ## `"internal"`
   * 
   * The plugin itself failed: a bug or a state it did not expect.
   */
  export type ErrorKind = 'invalid-input' | 'rejected' | 'internal';
  /**
   * The error a plugin returns instead of a result. The event then fails with this error
   * and is kept for an operator to inspect and replay; it is never retried on its own.
   */
  export interface Error {
    /**
     * What kind of failure this is.
     */
    kind: ErrorKind,
    /**
     * A message for the operator, saying what was wrong.
     */
    message: string,
  }
  /**
   * Send a body to one of the destinations named in the engine's configuration.
   */
  export interface Delivery {
    /**
     * The name of the destination, as configured (a plugin never sees or chooses a URL).
     */
    destination: string,
    /**
     * The request body.
     */
    body: Uint8Array,
    /**
     * The media type of `body`; when absent, the destination's configured type is used,
     * or `application/json`.
     */
    contentType?: string,
    /**
     * Extra headers for this request, added to the destination's own. Headers the engine
     * sets itself (`host`, `content-length`, `webhook-*` and the like) cannot be set here.
     */
    headers: Array<Header>,
    /**
     * The key of the entity this delivery updates, for ordering and conflict checks;
     * when absent, the event's key is used.
     */
    key?: string,
    /**
     * The version of the entity this delivery carries; when absent, the event's version.
     */
    version?: bigint,
    /**
     * When this version of the entity was made, in Unix milliseconds; when absent, the
     * event's timestamp.
     */
    timestamp?: bigint,
  }
  /**
   * Publish an event on the HMS bus. The engine keeps the origin of the event being handled,
   * so an update never travels back to the system it came from.
   */
  export interface Emission {
    /**
     * The type of the new event, such as `tax.rate.updated`.
     */
    eventType: string,
    /**
     * The payload of the new event.
     */
    payload: Uint8Array,
    /**
     * The media type of `payload`; `application/json` when absent.
     */
    contentType?: string,
    /**
     * The key of the entity the new event is about; when absent, the handled event's key.
     */
    key?: string,
    /**
     * The entity version the new event carries; when absent, the handled event's version.
     */
    version?: bigint,
    /**
     * When the change happened, in Unix milliseconds; when absent, the handled event's
     * timestamp.
     */
    timestamp?: bigint,
  }
  /**
   * One thing the engine should do because of an event.
   */
  export type Action = ActionDeliver | ActionEmit | ActionDrop;
  /**
   * Deliver a body to a named destination.
   */
  export interface ActionDeliver {
    tag: 'deliver',
    val: Delivery,
  }
  /**
   * Publish an event on the HMS bus.
   */
  export interface ActionEmit {
    tag: 'emit',
    val: Emission,
  }
  /**
   * Do nothing with the event, on purpose; the string says why and is recorded.
   */
  export interface ActionDrop {
    tag: 'drop',
    val: string,
  }
}
