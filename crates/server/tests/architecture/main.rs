//! The architecture invariants of `docs/ARCHITECTURE.md`, checked against
//! the source tree: which crate may depend on which, who may depend on the
//! WebRTC stack and on the database and file storage, where code may touch
//! the stack, UDP and the environment, and the order of `roost-core`'s
//! modules. Everything here reads files; nothing is built, run or fetched.
//!
//! This file holds the rules, the checks and, at the end, the `rules_*`
//! tests, which give each check a small broken example so that a check that
//! stops finding anything fails too. `read.rs` reads the tree: manifests
//! with `toml`, and Rust files with `syn`, from each crate's root through
//! its `mod` declarations, leaving out whatever is under `#[cfg(test)]` or
//! `#[cfg(all(test, ...))]`, so what is checked is what a release build
//! compiles. A broken invariant fails naming the rule and the manifest and
//! table, or the file and line, that break it.

mod read;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use read::{crate_sources, manifest, member_dirs, parse, parse_toml, read, workspace_manifests};
use read::{Cfg, Manifest, Named, Source};

// The rules, each a sentence of the "Invariants" section. Lists are
// separated by spaces; a name ending in `*` stands for every name so begun.

/// Rules by workspace member or by file.
type Rules = &'static [(&'static str, &'static str)];

/// Each workspace member and the Roost crates its `[dependencies]` may name.
const DIRECTION: Rules = &[
    ("crates/core", ""),
    ("crates/media", ""),
    ("crates/api", "roost-core"),
    ("crates/signaling", "roost-core roost-media"),
    ("crates/server", EVERY_LIBRARY),
    // The load tools drive the libraries from outside, as clients do;
    // nothing depends on them.
    ("benches", EVERY_LIBRARY),
];
const EVERY_LIBRARY: &str = "roost-api roost-signaling roost-media roost-core";

/// Roost crates a member never names, not even for its tests: the server
/// mounts the gateway's router beside the API's.
const NEVER: Rules = &[("crates/api", "roost-media roost-signaling")];

/// The WebRTC stack: webrtc-rs's sans-IO `rtc` and its parts, and the other
/// Rust stacks, so that none comes in beside it.
const WEBRTC_STACK: &str = "rtc rtc-* sansio interceptor webrtc webrtc-* str0m";

/// Who may depend on the WebRTC stack, and in which tables; the SRTP bench
/// measures the stack's SRTP directly.
const WEBRTC_USERS: Rules = &[("crates/media", "*"), ("benches", "dev-dependencies")];

/// The database and file storage, and who may depend on them.
const STORAGE: &str = "sqlx sqlx-* object_store rusqlite libsqlite3-sys postgres tokio-postgres";
const STORAGE_USERS: Rules = &[("crates/core", "*"), ("*", "dev-* build-*")];

/// The files of `roost-media` that name the WebRTC stack, and the stack's
/// modules each may name. The client for tests and the load tool builds the
/// binding request that nominates a path from the stack's STUN and ICE types.
const MEDIA_STACK_FILES: Rules = &[
    ("crates/media/src/peer/*", "*"),
    ("crates/media/src/client.rs", "stun ice crypto"),
];

/// Where code may name a UDP socket: `roost-media`, and the server, which
/// connects one that sends nothing to learn the address of its default route.
const UDP_USERS: &str = "crates/media/* crates/server/src/lib.rs";

/// The media loop's state machine and its parts: they take time as input
/// and do no IO (ADR 0019); the engine around them owns the clock, the
/// tasks, the channels and the socket.
const SANS_IO: &str = "crates/media/src/sfu/* crates/media/src/peer/* \
                       crates/media/src/munger.rs crates/media/src/vp8.rs crates/media/src/h264.rs \
                       crates/media/src/keyframe.rs \
                       crates/media/src/retransmit.rs crates/media/src/demux.rs";

/// What the sans-IO files may not name, as runs of path segments: a clock,
/// a runtime, a lock, a socket, or randomness they were not handed.
const IO_AND_CLOCKS: &str =
    "Instant::now SystemTime tokio Mutex RwLock UdpSocket std::net::UdpSocket \
                             thread_rng rand::random OsRng";

/// Library crates: they receive typed configuration.
const LIBRARIES: &str = "crates/core crates/media crates/signaling crates/api";

/// Paths that read the environment, the command line or signals, as runs
/// of segments anywhere in a path (`env::*` is a glob import).
const ENVIRONMENT_READERS: &str = "env::var env::var_os env::vars env::vars_os env::args \
                                   env::args_os env::* tokio::signal signal_hook ctrlc";

/// Test support, which reads the environment (`ROOST_TEST_*` name the
/// database for each test) and so is compiled only with its feature.
const TEST_SUPPORT: &str = "crates/core/src/store/testing.rs";
const TEST_SUPPORT_FEATURE: &str = "test-support";

/// The line of the "Invariants" section that heads `roost-core`'s layers.
const CORE_LAYERS_HEADING: &str = "`core` reads top to bottom";

// The checks on the tree.

#[test]
fn crates_depend_on_each_other_only_in_the_documented_direction() {
    let found = direction_violations(&workspace_manifests());
    assert_none(
        "crates depend on each other in the documented direction",
        found,
    );
}

#[test]
fn only_media_depends_on_the_webrtc_stack() {
    let found = dependency_violations(&workspace_manifests(), WEBRTC_STACK, WEBRTC_USERS);
    let rule = "only roost-media depends on the WebRTC stack, and the SRTP bench for its tests";
    assert_none(rule, found);
}

#[test]
fn only_core_depends_on_the_database_and_file_storage() {
    let found = dependency_violations(&workspace_manifests(), STORAGE, STORAGE_USERS);
    let rule = "only roost-core depends on the database and file storage, and others' tests";
    assert_none(rule, found);
}

#[test]
fn within_media_only_the_peer_touches_the_webrtc_stack() {
    let found = media_stack_violations(&crate_sources("crates/media"));
    let rule = "within roost-media only peer/ touches the WebRTC stack, and client.rs its \
                `rtc::stun`, `rtc::ice` and `rtc::crypto`";
    assert_none(rule, found);
}

#[test]
fn only_media_touches_udp() {
    let members = member_dirs();
    let crates = members.iter().filter(|d| d.starts_with("crates/"));
    let sources: Vec<Source> = crates.flat_map(|d| crate_sources(d)).collect();
    assert_none("only roost-media touches UDP", udp_violations(&sources));
}

#[test]
fn the_media_loop_reads_no_clock_and_does_no_io() {
    let found = sans_io_violations(&crate_sources("crates/media"));
    let rule = "the media loop's state machine and its parts take time as input: they name no \
                clock, runtime, lock, socket or unseeded randomness (ADR 0019)";
    assert_none(rule, found);
}

#[test]
fn library_crates_read_no_environment() {
    let libraries = LIBRARIES.split_whitespace();
    let found = environment_violations(&libraries.flat_map(crate_sources).collect::<Vec<_>>());
    let rule = "library crates receive typed configuration, and read no environment or signals \
                but in test support compiled only with the `test-support` feature";
    assert_none(rule, found);
}

#[test]
fn core_modules_reference_each_other_in_no_circle() {
    let found = circles(&module_graph("crates/core", &crate_sources("crates/core")));
    assert_none("roost-core's modules use each other in no circle", found);
}

#[test]
fn no_crate_has_modules_that_use_each_other_in_a_circle() {
    let mut found = Vec::new();
    for dir in [
        "crates/media",
        "crates/signaling",
        "crates/api",
        "crates/server",
    ] {
        found.extend(circles(&module_graph(dir, &crate_sources(dir))));
    }
    assert_none("a crate's modules use each other in no circle", found);
}

#[test]
fn core_modules_use_only_their_own_layer_or_those_above() {
    let layers = core_layers(&read("docs/ARCHITECTURE.md"));
    let missing = format!("no line with {CORE_LAYERS_HEADING:?}, then numbered layers");
    assert!(
        !layers.is_empty(),
        "docs/ARCHITECTURE.md's \"Invariants\" have {missing}"
    );
    let found = layer_violations(
        &module_graph("crates/core", &crate_sources("crates/core")),
        &layers,
    );
    assert_none(
        "roost-core's modules use only their layer or those above",
        found,
    );
}

fn assert_none(rule: &str, violations: Vec<String>) {
    assert!(
        violations.is_empty(),
        "broken: {rule} (docs/ARCHITECTURE.md, \"Invariants\"):\n  {}\n",
        violations.join("\n  ")
    );
}

// Manifests.

fn direction_violations(manifests: &[Manifest]) -> Vec<String> {
    let roost: BTreeSet<&str> = manifests.iter().map(|m| m.package.as_str()).collect();
    let mut found = Vec::new();
    for manifest in manifests {
        let Some(allowed) = rule_for(DIRECTION, &manifest.dir) else {
            let (dir, package) = (&manifest.dir, &manifest.package);
            found.push(format!(
                "{dir}/Cargo.toml: `{package}` has no place in the dependency direction; give it \
                 one in docs/ARCHITECTURE.md and in this test"
            ));
            continue;
        };
        let never = rule_for(NEVER, &manifest.dir).unwrap_or_default();
        for dependency in &manifest.dependencies {
            let (depends, package) = (manifest.depends(dependency), &dependency.package);
            let named = dependency.kind == "dependencies" && roost.contains(package.as_str());
            if named && !matches_any(allowed, package) {
                let allowed = match allowed {
                    "" => "no other Roost crate".to_owned(),
                    _ => format!("`{}`", allowed.replace(' ', "`, `")),
                };
                found.push(format!("{depends}; it may depend on {allowed}"));
            } else if matches_any(never, package) {
                found.push(format!("{depends}; it never does, not even for tests"));
            }
        }
    }
    found
}

/// Dependencies on `packages` but by the members, in the tables, `users`
/// names.
fn dependency_violations(manifests: &[Manifest], packages: &str, users: Rules) -> Vec<String> {
    let mut found = Vec::new();
    for manifest in manifests {
        for dependency in &manifest.dependencies {
            let allowed = |&(dir, tables): &(&str, &str)| {
                matches_any(dir, &manifest.dir) && matches_any(tables, dependency.kind)
            };
            if matches_any(packages, &dependency.package) && !users.iter().any(allowed) {
                found.push(manifest.depends(dependency));
            }
        }
    }
    found
}

/// The rule of the first entry that names `key`; an entry ending in `*`
/// names every key it begins.
fn rule_for(rules: Rules, key: &str) -> Option<&'static str> {
    rules
        .iter()
        .find(|(k, _)| matches_any(k, key))
        .map(|(_, rule)| *rule)
}

fn matches_any(patterns: &str, name: &str) -> bool {
    let matches = |p: &str| match p.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == p,
    };
    patterns.split_whitespace().any(matches)
}

// Sources.

fn media_stack_violations(sources: &[Source]) -> Vec<String> {
    places_where(sources, |source, named| {
        let allowed = rule_for(MEDIA_STACK_FILES, &source.path).unwrap_or_default();
        let module = named.segments.get(1).map_or("", String::as_str);
        let stack = matches_any(WEBRTC_STACK, &named.segments[0].replace('_', "-"));
        named.names_crate() && stack && !matches_any(allowed, module)
    })
}

fn udp_violations(sources: &[Source]) -> Vec<String> {
    places_where(sources, |source, named| {
        !matches_any(UDP_USERS, &source.path) && named.segments.iter().any(|s| s == "UdpSocket")
    })
}

fn sans_io_violations(sources: &[Source]) -> Vec<String> {
    places_where(sources, |source, named| {
        let path = format!("::{}::", named.segments.join("::"));
        let names = |forbidden: &str| path.contains(&format!("::{forbidden}::"));
        matches_any(SANS_IO, &source.path) && IO_AND_CLOCKS.split_whitespace().any(names)
    })
}

/// Reading the environment outside test support, and declaring test
/// support where a release build compiles it.
fn environment_violations(sources: &[Source]) -> Vec<String> {
    let mut found = places_where(sources, |source, named| {
        let path = format!("::{}::", named.segments.join("::"));
        let reads = |reader: &str| path.contains(&format!("::{reader}::"));
        let reads = ENVIRONMENT_READERS.split_whitespace().any(reads);
        source.path != TEST_SUPPORT && named.names_crate() && reads
    });
    for source in sources {
        for module in source.modules.iter().filter(|m| m.cfg == Cfg::Always) {
            if module.files().contains(&TEST_SUPPORT.to_owned()) {
                let feature = format!("#[cfg(feature = {TEST_SUPPORT_FEATURE:?})]");
                found.push(format!("{} (not under {feature})", source.at(module.line)));
            }
        }
    }
    found
}

/// Where in `sources` a path is found that `broken` says breaks a rule.
fn places_where(sources: &[Source], broken: impl Fn(&Source, &Named) -> bool) -> Vec<String> {
    let mut found = BTreeSet::new();
    for source in sources {
        let named = source.paths.iter().filter(|named| broken(source, named));
        found.extend(named.map(|named| source.at(named.line)));
    }
    found.into_iter().collect()
}

// roost-core's modules.

struct Graph {
    /// Top-level modules, as `lib.rs` declares them, with where.
    modules: Vec<(String, String)>,
    /// Who references whom, and each place it does.
    edges: BTreeMap<(String, String), Vec<String>>,
}

/// The references between a crate's top-level modules: `crate::x` (a
/// `super::` chain to the crate root reads as `crate::`), and names that
/// `lib.rs` imports into the root (`crate::CoreError` is `error`'s).
fn module_graph(dir: &str, sources: &[Source]) -> Graph {
    let src = format!("{dir}/src/");
    let root_file =
        |s: &&Source| s.path == format!("{src}lib.rs") || s.path == format!("{src}main.rs");
    let lib = sources.iter().find(|s| s.path == format!("{src}lib.rs"));
    let lib = lib.or_else(|| sources.iter().find(root_file));
    let lib = lib.unwrap_or_else(|| panic!("{dir} has a lib.rs or a main.rs"));
    let declared = lib.modules.iter().filter(|m| m.cfg != Cfg::TestOnly);
    let modules: Vec<_> = declared.map(|m| (m.name.clone(), lib.at(m.line))).collect();
    let is_module = |name: &str| modules.iter().any(|(m, _)| m == name);
    let mut root = BTreeMap::new();
    for named in &lib.paths {
        let segments = named.segments.strip_prefix(&["crate".to_owned()]);
        let segments = segments.unwrap_or(&named.segments);
        if let (Some(name), Some(module)) = (&named.imported_as, segments.first()) {
            root.insert(name.clone(), module.clone());
        }
    }
    let mut edges: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for source in sources {
        let inner = source.path.strip_prefix(&src).unwrap_or_default();
        let from = inner.split(['/', '.']).next().unwrap_or_default();
        for named in source.paths.iter().filter(|n| n.segments[0] == "crate") {
            let head = named.segments.get(1).map_or("", String::as_str);
            let to = root.get(head).filter(|_| !is_module(head));
            let to = to.map_or(head, String::as_str);
            if is_module(from) && is_module(to) && to != from {
                let edge = edges.entry((from.to_owned(), to.to_owned()));
                edge.or_default().push(source.at(named.line));
            }
        }
    }
    Graph { modules, edges }
}

/// Circles: for each module on one and on none found before, the shortest
/// through it, with a place of each reference along it.
fn circles(graph: &Graph) -> Vec<String> {
    let mut on_a_circle = BTreeSet::new();
    let mut found = Vec::new();
    for (module, _) in &graph.modules {
        if on_a_circle.contains(module.as_str()) {
            continue;
        }
        let Some(circle) = shortest_circle(graph, module) else {
            continue;
        };
        let mut message = format!("{}:", circle.join(" → "));
        for step in circle.windows(2) {
            let places = &graph.edges[&(step[0].to_owned(), step[1].to_owned())];
            let (from, to, at) = (step[0], step[1], with_more(places));
            message.push_str(&format!("\n    {from} → {to}: {at}"));
        }
        on_a_circle.extend(circle);
        found.push(message);
    }
    found
}

/// The shortest way from `start` back to itself, by breadth-first search.
fn shortest_circle<'a>(graph: &'a Graph, start: &'a str) -> Option<Vec<&'a str>> {
    let mut parent: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(module) = queue.pop_front() {
        for (_, next) in graph.edges.keys().filter(|(from, _)| from == module) {
            if next == start {
                let mut circle = vec![start, module];
                while let Some(&p) = parent.get(circle.last().expect("not empty")) {
                    circle.push(p);
                }
                circle.reverse();
                return Some(circle);
            }
            if !parent.contains_key(next.as_str()) {
                parent.insert(next, module);
                queue.push_back(next);
            }
        }
    }
    None
}

fn with_more(places: &[String]) -> String {
    match places.len() {
        1 => places[0].clone(),
        n => format!("{} (and {} more)", places[0], n - 1),
    }
}

/// `roost-core`'s layers, top first, from the "Invariants" section: the
/// line holding [`CORE_LAYERS_HEADING`], then one numbered line per layer,
/// ``1. name: `module`, `module` ``.
fn core_layers(doc: &str) -> Vec<(String, Vec<String>)> {
    let section = doc.split("\n## ").find(|s| s.starts_with("Invariants"));
    let lines = section.unwrap_or_default().lines();
    let lines = lines.skip_while(|l| !l.contains(CORE_LAYERS_HEADING));
    let lines = lines.skip(1);
    let numbered = lines.map_while(|line| {
        let (number, layer) = line.trim().split_once(". ")?;
        number.parse::<usize>().ok().and(layer.split_once(':'))
    });
    let mut layers = Vec::new();
    for (name, list) in numbered {
        let modules = list.split('`').skip(1).step_by(2);
        layers.push((name.trim().to_owned(), modules.map(str::to_owned).collect()));
    }
    layers
}

fn layer_violations(graph: &Graph, layers: &[(String, Vec<String>)]) -> Vec<String> {
    let mut layer_of: BTreeMap<&str, usize> = BTreeMap::new();
    let mut found = Vec::new();
    for (i, (name, modules)) in layers.iter().enumerate() {
        for module in modules {
            if let Some(other) = layer_of.insert(module, i) {
                let both = format!("{} and {name}", layers[other].0);
                found.push(format!("docs/ARCHITECTURE.md: `{module}` is in {both}"));
            }
        }
    }
    for (module, declared) in &graph.modules {
        if !layer_of.contains_key(module.as_str()) {
            found.push(format!("{declared} (`{module}` is in no layer)"));
        }
    }
    let shown = |i: usize| format!("layer {} ({})", i + 1, layers[i].0);
    for ((from, to), places) in &graph.edges {
        let (Some(&f), Some(&t)) = (layer_of.get(from.as_str()), layer_of.get(to.as_str())) else {
            continue;
        };
        if t > f {
            let (f, t, at) = (shown(f), shown(t), with_more(places));
            found.push(format!(
                "`{from}`, {f}, uses `{to}`, {t}, which sits below it: {at}"
            ));
        }
    }
    found
}

// Each check, given a small broken example, finds what is broken.

/// Files written one after another, each after a `--- path` line.
fn files(text: &str) -> impl Iterator<Item = (&str, &str)> {
    let files = text.split("--- ").skip(1);
    files.map(|file| file.split_once('\n').unwrap_or((file, "")))
}

/// Where each violation is: what comes before its first `: `.
fn places(violations: Vec<String>) -> Vec<String> {
    let place = |v: &String| v.split(": ").next().unwrap_or_default().to_owned();
    violations.iter().map(place).collect()
}

#[test]
fn rules_of_manifests_find_a_wrong_dependency() {
    let workspace = toml::Value::Table(parse_toml("", "srtp = { package = \"rtc-srtp\" }"));
    let tree = r#"
--- crates/core
package.name = "roost-core"
--- crates/media
package.name = "roost-media"
dependencies.rtc = "0.21"
--- crates/api
package.name = "roost-api"
dependencies = { roost-core.workspace = true, srtp.workspace = true }
target.'cfg(unix)'.dependencies = { roost-signaling = { workspace = true } }
dev-dependencies = { roost-media.workspace = true, sqlx = "0.8" }
--- crates/signaling
package.name = "roost-signaling"
[dependencies.webrtc]
--- crates/server
package.name = "roost"
dependencies.db.package = "sqlx"
--- benches
package.name = "roost-bench"
dependencies.rtc = "1"
dev-dependencies.rtc = "1"
--- tools
package.name = "roost-tools"
"#;
    let manifests: Vec<Manifest> = files(tree)
        .map(|(dir, text)| manifest(dir, text, &workspace))
        .collect();
    let direction = direction_violations(&manifests);
    assert_eq!(
        direction,
        [
            "crates/api/Cargo.toml [dev-dependencies]: `roost-api` depends on `roost-media`; \
             it never does, not even for tests",
            "crates/api/Cargo.toml [target.'cfg(unix)'.dependencies]: `roost-api` depends on \
             `roost-signaling`; it may depend on `roost-core`",
            "tools/Cargo.toml: `roost-tools` has no place in the dependency direction; give it \
             one in docs/ARCHITECTURE.md and in this test",
        ]
    );
    let stack = places(dependency_violations(
        &manifests,
        WEBRTC_STACK,
        WEBRTC_USERS,
    ));
    let tables = ["crates/api", "crates/signaling", "benches"]
        .map(|d| format!("{d}/Cargo.toml [dependencies]"));
    assert_eq!(stack, tables);
    let storage = dependency_violations(&manifests, STORAGE, STORAGE_USERS);
    assert_eq!(
        storage,
        ["crates/server/Cargo.toml [dependencies]: `roost` depends on `sqlx`"]
    );
}

#[test]
fn rules_of_sources_find_the_stack_udp_and_the_environment_where_they_must_not_be() {
    let tree = r#"
--- crates/media/src/peer/mod.rs
use rtc::peer_connection::RTCPeerConnection;
--- crates/media/src/peer/sdp.rs
fn f() { rtc::sdp::SessionDescription::unmarshal(r); }
--- crates/media/src/client.rs
use rtc::stun::message;
fn f() { rtc::peer::x(); }
--- crates/media/src/sfu.rs
use rtc_srtp::C;
fn g(rtc: &P) { rtc.x(); crate::rtc::y(); }
--- crates/media/src/udp.rs
use std::net::UdpSocket;
--- crates/signaling/src/hub.rs
fn f() { tokio::net::UdpSocket::bind(a); }
--- crates/server/src/lib.rs
fn f() { std::net::UdpSocket::bind(a); }
--- crates/core/src/turn.rs
fn a() { std::env::var("X"); }
use std::env::{self, var_os};
#[cfg(test)]
mod tests { fn b() { std::env::var("Y"); } }
--- crates/api/src/lib.rs
use tokio::signal::unix::signal;
fn env() { env!("V"); }
--- crates/core/src/store/testing.rs
fn c() { std::env::var("ROOST_TEST_DATABASE"); }
--- crates/core/src/store/mod.rs
pub mod testing;
"#;
    let sources: Vec<Source> = files(tree).map(|(path, text)| parse(path, text)).collect();
    let stack = places(media_stack_violations(&sources));
    assert_eq!(
        stack,
        ["crates/media/src/client.rs:2", "crates/media/src/sfu.rs:1"]
    );
    assert_eq!(
        places(udp_violations(&sources)),
        ["crates/signaling/src/hub.rs:1"]
    );
    let environment = places(environment_violations(&sources));
    let lines = [
        "api/src/lib.rs:1",
        "core/src/turn.rs:1",
        "core/src/turn.rs:2",
        "core/src/store/mod.rs:1",
    ];
    assert_eq!(environment, lines.map(|l| format!("crates/{l}")));
    let gated = "#[cfg(feature = \"test-support\")]\npub mod testing;";
    let gated = parse("crates/core/src/store/mod.rs", gated);
    assert_eq!(environment_violations(&[gated]), Vec::<String>::new());
}

#[test]
fn rules_of_core_find_a_circle_and_a_module_out_of_its_layer() {
    let tree = r#"
--- lib.rs
pub mod a;
pub mod b;
pub mod c;
mod d;
#[cfg(test)]
mod fixtures;
pub use a::{T, U as V};
--- a.rs
use crate::b::B; // crate::d
fn f() -> String { format!("{}", crate::b::X) }
--- b/mod.rs
mod inner;
--- b/inner.rs
use super::super::c;
use super::Local;
--- c.rs
fn f() -> crate::V { "crate::d" }
#[cfg(test)]
mod tests { use crate::d; }
#[cfg(all(test, feature = "f"))]
fn g() { crate::d::x(); }
struct S { #[cfg(test)] d: crate::d::D, b: Vec<crate::b::B> }
--- d.rs
use crate::{a, T, Core};
mod inner { use super::{super::c as e, self}; }
"#;
    let sources: Vec<Source> = files(tree)
        .map(|(path, text)| parse(&format!("crates/core/src/{path}"), text))
        .collect();
    let graph = module_graph("crates/core", &sources);
    let edges: Vec<String> = graph
        .edges
        .keys()
        .map(|(f, t)| format!("{f}→{t}"))
        .collect();
    assert_eq!(edges, ["a→b", "b→c", "c→a", "c→b", "d→a", "d→c"]);
    assert_eq!(
        circles(&graph),
        ["a → b → c → a:\n    \
          a → b: crates/core/src/a.rs:1: use crate::b::B; // crate::d (and 1 more)\n    \
          b → c: crates/core/src/b/inner.rs:1: use super::super::c;\n    \
          c → a: crates/core/src/c.rs:1: fn f() -> crate::V { \"crate::d\" }"]
    );
    let doc =
        "# Architecture\n## Invariants\n- `core` reads top to bottom:\n  1. low: `a`, `gone`\n  \
               2. high: `b`\n- Another rule.\n## After\n3. late: `c`\n";
    let layers = core_layers(doc);
    let low = ("low".to_owned(), vec!["a".to_owned(), "gone".to_owned()]);
    assert_eq!(layers, [low, ("high".to_owned(), vec!["b".to_owned()])]);
    assert_eq!(
        places(layer_violations(&graph, &layers)),
        [
            "crates/core/src/lib.rs:3",
            "crates/core/src/lib.rs:4",
            "`a`, layer 1 (low), uses `b`, layer 2 (high), which sits below it"
        ]
    );
    assert!(core_layers("# A\n## Invariants\n- Nothing about core.\n").is_empty());
}
