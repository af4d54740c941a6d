// The types of `@hms/sync-sdk/run`: how a plugin module's export is called, shared by the
// component's entry (made by `hms-sync-build`) and the test harness.

import type { Action, Entity, Event, PluginModule, Resolution } from './index.js';

/** The name of a plugin world. */
export type World = 'transformer' | 'handler' | 'resolver';

/** The export each world calls (`iface`) and the function the plugin module must export for it (`fn`). */
export const WORLDS: Readonly<Record<World, { readonly iface: string; readonly fn: string }>>;

/** The world a plugin module implements: the one whose function it exports. Throws when it exports none, or several. */
export function worldOf(plugin: object): World;

/**
 * Runs a transformer's `transform` on one event: its result as bytes. Throws a PluginError:
 * the plugin's own, or `internal` for anything else it throws and for a Promise.
 */
export function runTransform(plugin: PluginModule, event: Event): Uint8Array;

/** Runs a handler's `handle` on one event: its actions (none for `undefined`). Throws a PluginError as `runTransform` does. */
export function runHandle(plugin: PluginModule, event: Event): Action[];

/** Runs a resolver's `resolve` on two versions of an entity. Throws a PluginError as `runTransform` does. */
export function runResolve(plugin: PluginModule, current: Entity, incoming: Entity): Resolution;
