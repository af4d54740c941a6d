//! Routes: which plugins run on the events of each route, where a transformer's result goes,
//! and what the pipeline must know about destinations (their system, their own headers) and
//! resolvers. Built once from a checked configuration and its loaded plugins.

use crate::config::{Config, Problem};
use crate::conflict::Conflict;
use crate::sandbox::{Plugin, PluginSetup, Sandbox, World};
use crate::store::Route;
use std::collections::{BTreeMap, HashMap};

/// Where a route sends its transformer's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forward {
    /// Deliver it to this destination (an HMS event route).
    Deliver(String),
    /// Emit it as an HMS event of this type (a webhook route).
    Emit(String),
    /// The plugin is a handler: its actions say.
    Actions,
}

/// A plugin, by name, with the setup it runs under; its active version comes from the
/// [`Registry`](crate::registry::Registry) each time it runs.
#[derive(Debug, Clone)]
pub struct Configured {
    /// The plugin's name.
    pub name: String,
    /// Its settings and limits.
    pub setup: PluginSetup,
}

impl Configured {
    fn new(config: &Config, name: &str) -> Configured {
        Configured {
            name: name.to_owned(),
            setup: config.plugin_setup(name),
        }
    }
}

/// One handler of a route: a plugin, its setup, where a transformer's result goes, and how
/// conflicts are settled for its actions.
#[derive(Debug, Clone)]
pub struct RouteHandler {
    /// The plugin and its setup.
    pub handler: Configured,
    /// Where its result goes.
    pub forward: Forward,
    /// The route's conflict settings.
    pub conflict: Conflict,
}

/// What a destination is to the pipeline.
#[derive(Debug, Clone)]
pub(super) struct DestinationInfo {
    /// The media type of bodies that do not set one.
    pub(super) content_type: String,
    /// The external system it belongs to.
    pub(super) system: String,
    /// The headers its configuration sets, which a plugin may not set.
    pub(super) headers: Vec<String>,
}

/// Every route's handlers, the resolvers, and what the pipeline needs to know about
/// destinations and cycles.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    handlers: HashMap<Route, Vec<RouteHandler>>,
    pub(super) destinations: BTreeMap<String, DestinationInfo>,
    resolvers: HashMap<String, Configured>,
    pub(super) max_hops: u32,
    /// How far ahead of the engine's clock a row's timestamp may be (`maxClockSkew`).
    pub(super) max_clock_skew_ms: i64,
}

impl Routes {
    /// The handlers of a route, in configuration order.
    pub fn handlers(&self, route: &Route) -> &[RouteHandler] {
        self.handlers.get(route).map_or(&[], Vec::as_slice)
    }

    /// Every route the plugin `name` handles events of, with its place among the route's
    /// handlers (a plugin may handle a route twice), by route name.
    pub fn of_plugin(&self, name: &str) -> Vec<(String, usize, &RouteHandler)> {
        let mut of = Vec::new();
        for (route, handlers) in &self.handlers {
            for (i, handler) in handlers.iter().enumerate() {
                if handler.handler.name == name {
                    of.push((route.to_string(), i, handler));
                }
            }
        }
        of.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        of
    }

    /// Every configured route, by its name in records (`bus:<type>`, `webhook:<path>`).
    pub fn names(&self) -> impl Iterator<Item = String> + '_ {
        self.handlers.keys().map(ToString::to_string)
    }

    /// Whether events of this type from the HMS bus have a route.
    pub fn has_bus_route(&self, event_type: &str) -> bool {
        self.handlers
            .contains_key(&Route::Bus(event_type.to_owned()))
    }

    /// The event types from the HMS bus that have a route, in order.
    pub fn bus_types(&self) -> Vec<String> {
        let mut types: Vec<String> = self
            .handlers
            .keys()
            .filter_map(|route| match route {
                Route::Bus(event_type) => Some(event_type.clone()),
                _ => None,
            })
            .collect();
        types.sort();
        types
    }

    /// The resolver plugin called `name`, with its setup.
    pub fn resolver(&self, name: &str) -> Option<&Configured> {
        self.resolvers.get(name)
    }

    /// Builds the routes of a checked configuration from the worlds its plugins implement (as
    /// loading them found). A transformer must say where its result goes and a handler must
    /// not; a resolver only settles conflicts.
    pub fn build(
        config: &Config,
        worlds: &BTreeMap<String, World>,
    ) -> Result<Routes, Vec<Problem>> {
        let mut routes = Routes {
            handlers: HashMap::new(),
            destinations: config
                .destinations
                .iter()
                .map(|(name, d)| {
                    let info = DestinationInfo {
                        content_type: d.content_type.clone(),
                        system: d.system.clone().unwrap_or_else(|| name.clone()),
                        headers: d.headers.keys().cloned().collect(),
                    };
                    (name.clone(), info)
                })
                .collect(),
            resolvers: HashMap::new(),
            max_hops: config.max_hops,
            max_clock_skew_ms: config.max_clock_skew_ms(),
        };
        let mut problems = Vec::new();
        let mut problem = |key: String, message: String| problems.push(Problem { key, message });
        let mut built: Vec<(Route, RouteHandler)> = Vec::new();
        let routes_in_config = config
            .hms_events
            .iter()
            .enumerate()
            .map(|(i, r)| {
                (
                    format!("hmsEvents[{i}]"),
                    Route::Bus(r.event.clone()),
                    &r.handler,
                    r.destination.clone().map(Forward::Deliver),
                    "destination",
                    &r.conflict,
                )
            })
            .chain(config.external_webhooks.iter().enumerate().map(|(i, r)| {
                (
                    format!("externalWebhooks[{i}]"),
                    Route::Webhook(r.path.clone()),
                    &r.handler,
                    r.emit.clone().map(Forward::Emit),
                    "emit",
                    &r.conflict,
                )
            }));
        for (key, route, name, transformer_forward, needs, conflict) in routes_in_config {
            if let Some(resolver) = &conflict.resolver
                && let Some(world) = worlds.get(resolver)
            {
                if *world == World::Resolver {
                    routes
                        .resolvers
                        .insert(resolver.clone(), Configured::new(config, resolver));
                } else {
                    problem(
                        format!("{key}.conflict.resolver"),
                        format!("`{resolver}` is a {world} plugin, not a resolver"),
                    );
                }
            }
            let Some(world) = worlds.get(name.as_str()) else {
                continue;
            };
            let forward = match (*world, transformer_forward) {
                (World::Transformer, Some(forward)) => forward,
                (World::Handler, None) => Forward::Actions,
                (World::Transformer, None) => {
                    problem(
                        key,
                        format!(
                            "`{name}` is a transformer, so the route must set `{needs}` to say where its result goes"
                        ),
                    );
                    continue;
                }
                (World::Resolver, _) => {
                    problem(
                        key,
                        format!(
                            "`{name}` is a resolver: it settles conflicts (`conflict.resolver`) and cannot handle events"
                        ),
                    );
                    continue;
                }
                (World::Handler, Some(_)) => {
                    problem(
                        key,
                        format!(
                            "`{name}` is a handler and chooses where its actions go itself; remove `{needs}`"
                        ),
                    );
                    continue;
                }
            };
            built.push((
                route,
                RouteHandler {
                    handler: Configured::new(config, name),
                    forward,
                    conflict: Conflict::new(conflict, config.max_json_depth),
                },
            ));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        for (route, h) in built {
            routes.handlers.entry(route).or_default().push(h);
        }
        Ok(routes)
    }
}

/// Loads every configured plugin into the sandbox. Each failure is a problem naming its key.
pub fn load_plugins(
    config: &Config,
    sandbox: &Sandbox,
) -> Result<BTreeMap<String, Plugin>, Vec<Problem>> {
    let mut plugins = BTreeMap::new();
    let mut problems = Vec::new();
    for (name, settings) in &config.plugins {
        let key = format!("plugins.{name}.path");
        let bytes = match std::fs::read(&settings.path.0) {
            Ok(bytes) => bytes,
            Err(e) => {
                problems.push(Problem {
                    key,
                    message: format!("cannot read {}: {e}", settings.path.0.display()),
                });
                continue;
            }
        };
        match sandbox.load(name, &bytes) {
            Ok(plugin) => {
                tracing::info!(
                    plugin = %name,
                    version = %plugin.version_tag(),
                    world = %plugin.world(),
                    "plugin loaded"
                );
                plugins.insert(name.clone(), plugin);
            }
            Err(e) => problems.push(Problem {
                key,
                message: format!("{} cannot be loaded: {e}", settings.path.0.display()),
            }),
        }
    }
    if problems.is_empty() {
        Ok(plugins)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(routes: &str) -> Config {
        let yaml = format!(
            "plugins:
  out: {{path: out.wasm}}
  in: {{path: in.wasm}}
  merge: {{path: merge.wasm}}
destinations:
  state: {{url: 'http://127.0.0.1:9/'}}
core: {{url: 'http://127.0.0.1:9/'}}
{routes}"
        );
        Config::parse(&yaml, Path::new("/")).unwrap()
    }

    fn worlds() -> BTreeMap<String, World> {
        BTreeMap::from([
            ("out".to_owned(), World::Transformer),
            ("in".to_owned(), World::Handler),
            ("merge".to_owned(), World::Resolver),
        ])
    }

    #[test]
    fn routes_say_where_results_go_by_the_plugins_world() {
        let routes = Routes::build(
            &config(
                "hmsEvents:
  - {event: t.updated, handler: out, destination: state,
     conflict: {strategy: plugin, resolver: merge}}
  - {event: t.updated, handler: in}
externalWebhooks:
  - {path: /hook, handler: out, emit: t.changed}",
            ),
            &worlds(),
        )
        .unwrap();
        let bus = routes.handlers(&Route::Bus("t.updated".into()));
        assert_eq!(bus.len(), 2);
        assert_eq!(bus[0].forward, Forward::Deliver("state".into()));
        assert_eq!(bus[1].forward, Forward::Actions);
        assert_eq!(
            routes.handlers(&Route::Webhook("/hook".into()))[0].forward,
            Forward::Emit("t.changed".into())
        );
        assert!(routes.has_bus_route("t.updated"));
        assert!(!routes.has_bus_route("t.changed"));
        assert!(routes.resolver("merge").is_some());
    }

    #[test]
    fn a_route_that_does_not_fit_its_plugins_world_is_a_problem() {
        let problems = Routes::build(
            &config(
                "hmsEvents:
  - {event: a, handler: out}
  - {event: b, handler: in, destination: state}
  - {event: c, handler: merge}
  - {event: d, handler: in, conflict: {strategy: plugin, resolver: out}}",
            ),
            &worlds(),
        )
        .unwrap_err();
        let messages: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 4, "{messages:#?}");
        assert!(messages[0].starts_with("hmsEvents[0]: `out` is a transformer"));
        assert!(messages[1].contains("remove `destination`"));
        assert!(messages[2].contains("is a resolver"));
        assert!(
            messages[3]
                .starts_with("hmsEvents[3].conflict.resolver: `out` is a transformer plugin")
        );
    }
}
