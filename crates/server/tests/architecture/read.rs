//! Reading the tree: manifests with `toml`, and Rust files with `syn` as a
//! release build compiles them.

use std::path::{Path, PathBuf};

use proc_macro2::{Ident, TokenStream, TokenTree};
use syn::visit::{self, Visit};

use super::TEST_SUPPORT_FEATURE;

// Manifests.

pub struct Manifest {
    pub dir: String,
    pub package: String,
    pub dependencies: Vec<Dependency>,
}

pub struct Dependency {
    /// The package on crates.io or in the workspace, after renames.
    pub package: String,
    /// `dependencies`, `dev-dependencies` or `build-dependencies`.
    pub kind: &'static str,
    /// The table's header, such as `[target.'cfg(unix)'.dependencies]`.
    pub table: String,
}

impl Manifest {
    /// Where the manifest names a dependency, and which, for a message.
    pub fn depends(&self, dependency: &Dependency) -> String {
        let (dir, table, package) = (&self.dir, &dependency.table, &self.package);
        let named = &dependency.package;
        format!("{dir}/Cargo.toml {table}: `{package}` depends on `{named}`")
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

pub fn parse_toml(path: &str, text: &str) -> toml::Table {
    text.parse().unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn member_dirs() -> Vec<String> {
    let workspace = parse_toml("Cargo.toml", &read("Cargo.toml"));
    let members = workspace["workspace"]["members"].as_array();
    let members = members.expect("the workspace lists its members").iter();
    members
        .filter_map(toml::Value::as_str)
        .map(str::to_owned)
        .collect()
}

pub fn workspace_manifests() -> Vec<Manifest> {
    let workspace = parse_toml("Cargo.toml", &read("Cargo.toml"));
    let inherited = &workspace["workspace"]["dependencies"];
    let manifest_of = |dir: String| manifest(&dir, &read(&format!("{dir}/Cargo.toml")), inherited);
    member_dirs().into_iter().map(manifest_of).collect()
}

/// A member's manifest: its package and the dependencies of every table,
/// target-specific ones too, with renames (`package = "..."`) applied, its
/// own or those of the `[workspace.dependencies]` it inherits.
pub fn manifest(dir: &str, text: &str, inherited: &toml::Value) -> Manifest {
    let manifest = toml::Value::Table(parse_toml(&format!("{dir}/Cargo.toml"), text));
    let renamed = |value: &toml::Value| Some(value.get("package")?.as_str()?.to_owned());
    let mut tables = vec![(String::new(), &manifest)];
    for (cfg, table) in entries(manifest.get("target")) {
        tables.push((format!("target.'{cfg}'."), table));
    }
    let mut dependencies = Vec::new();
    for (prefix, table) in tables {
        for kind in ["dependencies", "dev-dependencies", "build-dependencies"] {
            for (key, value) in entries(table.get(kind)) {
                let inherits = value.get("workspace").and_then(|w| w.as_bool()) == Some(true);
                let inherited = inherited.get(key).filter(|_| inherits);
                let package = renamed(value).or_else(|| inherited.and_then(renamed));
                let package = package.unwrap_or_else(|| key.clone());
                let table = format!("[{prefix}{kind}]");
                dependencies.push(Dependency {
                    package,
                    kind,
                    table,
                });
            }
        }
    }
    let name = &manifest["package"]["name"];
    let package = name.as_str().expect("a package has a name").to_owned();
    Manifest {
        dir: dir.to_owned(),
        package,
        dependencies,
    }
}

/// The entries of a table, if `value` is one.
fn entries(value: Option<&toml::Value>) -> impl Iterator<Item = (&String, &toml::Value)> {
    value.and_then(toml::Value::as_table).into_iter().flatten()
}

// Rust.

/// A Rust file, as far as a release build compiles it.
pub struct Source {
    pub path: String,
    text: String,
    /// Every path it names: a `use` tree's, one per leaf; those in types,
    /// expressions and patterns; and `a::b` runs of tokens in macro calls,
    /// which `syn` leaves unparsed.
    pub paths: Vec<Named>,
    /// Its `mod name;` declarations.
    pub modules: Vec<Declared>,
}

pub struct Named {
    /// A `super::` chain up to the crate root is written `crate`.
    pub segments: Vec<String>,
    /// The name a `use` or `extern crate` brings in.
    pub imported_as: Option<String>,
    pub line: usize,
}

pub struct Declared {
    pub name: String,
    /// The module's file, less `.rs` or `/mod.rs`.
    pub dir: String,
    pub cfg: Cfg,
    pub line: usize,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Cfg {
    Always,
    /// Under the `test-support` feature.
    TestSupport,
    /// Under `cfg(test)` or `cfg(all(test, ...))`.
    TestOnly,
}

impl Source {
    /// `path:line: the line`, for a message.
    pub fn at(&self, line: usize) -> String {
        let shown = self.text.lines().nth(line.saturating_sub(1));
        format!("{}:{line}: {}", self.path, shown.unwrap_or_default().trim())
    }
}

impl Named {
    /// Whether it may name a crate: imported, or of two segments or more.
    pub fn names_crate(&self) -> bool {
        self.imported_as.is_some() || self.segments.len() > 1
    }
}

impl Declared {
    pub fn files(&self) -> [String; 2] {
        [format!("{}.rs", self.dir), format!("{}/mod.rs", self.dir)]
    }
}

/// A crate's files that a release build compiles: from `src/lib.rs` and
/// `src/main.rs` through their `mod` declarations, but those for tests.
pub fn crate_sources(dir: &str) -> Vec<Source> {
    let exists = |path: &String| root().join(path).is_file();
    let roots = [format!("{dir}/src/lib.rs"), format!("{dir}/src/main.rs")];
    let mut files: Vec<String> = roots.into_iter().filter(exists).collect();
    let mut sources = Vec::new();
    while let Some(path) = files.pop() {
        let source = parse(&path, &read(&path));
        for module in source.modules.iter().filter(|m| m.cfg != Cfg::TestOnly) {
            let file = module.files().into_iter().find(exists);
            files.push(file.unwrap_or_else(|| panic!("{}: no file", source.at(module.line))));
        }
        sources.push(source);
    }
    sources.sort_by(|a, b| a.path.cmp(&b.path));
    sources
}

pub fn parse(path: &str, text: &str) -> Source {
    let file = syn::parse_file(text);
    let file = file.unwrap_or_else(|e| panic!("{path}:{}: {e}", e.span().start().line));
    // A crate root and a `mod.rs` keep their modules' files beside them,
    // `x.rs` in `x/`.
    let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
    let is_root = parent.ends_with("/src") && ["lib.rs", "main.rs"].contains(&name);
    let dir = match is_root || name == "mod.rs" {
        true => parent.to_owned(),
        false => path.trim_end_matches(".rs").to_owned(),
    };
    let below_src = dir.split_once("/src").map_or("", |(_, below)| below);
    let depth = below_src.matches('/').count();
    let (paths, modules) = (Vec::new(), Vec::new());
    let mut reader = Reader {
        dir,
        depth,
        paths,
        modules,
    };
    if cfg_of(&file.attrs) != Cfg::TestOnly {
        reader.visit_file(&file);
    }
    let (path, text, paths, modules) = (path.into(), text.into(), reader.paths, reader.modules);
    Source {
        path,
        text,
        paths,
        modules,
    }
}

/// Which builds compile an item, from its `#[cfg(...)]` attributes.
fn cfg_of(attrs: &[syn::Attribute]) -> Cfg {
    fn requires_test(meta: &syn::Meta) -> bool {
        let all = syn::punctuated::Punctuated::<syn::Meta, syn::Token![,]>::parse_terminated;
        match meta {
            syn::Meta::Path(path) => path.is_ident("test"),
            syn::Meta::List(list) if list.path.is_ident("all") => list
                .parse_args_with(all)
                .is_ok_and(|all| all.iter().any(requires_test)),
            _ => false,
        }
    }
    let cfgs = attrs.iter().filter(|a| a.path().is_ident("cfg"));
    let mut cfg = Cfg::Always;
    for list in cfgs.flat_map(|a| a.meta.require_list()) {
        if list.parse_args().is_ok_and(|meta| requires_test(&meta)) {
            return Cfg::TestOnly;
        }
        let feature = format!("{TEST_SUPPORT_FEATURE:?}");
        if list.tokens.to_string().contains(&feature) {
            cfg = Cfg::TestSupport;
        }
    }
    cfg
}

/// Walks a file's items, leaving out what only tests compile.
struct Reader {
    /// Where the files of the modules declared here lie.
    dir: String,
    /// How many modules below the crate root the walk is.
    depth: usize,
    paths: Vec<Named>,
    modules: Vec<Declared>,
}

impl Reader {
    fn name(&mut self, mut segments: Vec<String>, imported_as: Option<String>, line: usize) {
        if segments.last().is_some_and(|last| last == "self") {
            segments.pop(); // `use a::{self}` names `a`
        }
        if segments.is_empty() {
            return;
        }
        let supers = segments.iter().take_while(|s| *s == "super").count();
        if supers > 0 && supers == self.depth {
            segments.splice(..supers, ["crate".to_owned()]);
        }
        self.paths.push(Named {
            segments,
            imported_as,
            line,
        });
    }

    /// A `use` tree, one path per leaf, `a::*` ending in `*`.
    fn read_use(&mut self, tree: &syn::UseTree, prefix: &[String]) {
        let then = |name: &dyn ToString| [prefix, &[name.to_string()]].concat();
        match tree {
            syn::UseTree::Path(path) => self.read_use(&path.tree, &then(&path.ident)),
            syn::UseTree::Group(group) => {
                for tree in &group.items {
                    self.read_use(tree, prefix);
                }
            }
            syn::UseTree::Name(name) => self.name(
                then(&name.ident),
                Some(name.ident.to_string()),
                line(&name.ident),
            ),
            syn::UseTree::Rename(rename) => self.name(
                then(&rename.ident),
                Some(rename.rename.to_string()),
                line(&rename.ident),
            ),
            syn::UseTree::Glob(glob) => {
                let line = glob.star_token.spans[0].start().line;
                self.name(then(&"*"), Some("*".to_owned()), line)
            }
        }
    }

    /// The runs of `a::b::c` in a macro's tokens.
    fn read_tokens(&mut self, tokens: TokenStream) {
        let tokens: Vec<TokenTree> = tokens.into_iter().collect();
        let mut i = 0;
        while i < tokens.len() {
            if let TokenTree::Group(group) = &tokens[i] {
                self.read_tokens(group.stream());
            } else if let TokenTree::Ident(first) = &tokens[i] {
                let mut run = vec![first.to_string()];
                while let [TokenTree::Punct(a), TokenTree::Punct(b), TokenTree::Ident(next), ..] =
                    &tokens[i + 1..]
                {
                    if a.as_char() != ':' || b.as_char() != ':' {
                        break;
                    }
                    run.push(next.to_string());
                    i += 3;
                }
                self.name(run, None, line(first));
            }
            i += 1;
        }
    }
}

fn line(ident: &Ident) -> usize {
    ident.span().start().line
}

/// Visits of the items and parts of items that carry attributes, each left
/// out when only tests compile it.
macro_rules! unless_test_only {
    ($($visit:ident: $node:ident),* $(,)?) => {$(
        fn $visit(&mut self, node: &'ast syn::$node) {
            if cfg_of(&node.attrs) != Cfg::TestOnly {
                visit::$visit(self, node);
            }
        }
    )*};
}

impl<'ast> Visit<'ast> for Reader {
    unless_test_only!(
        visit_item_const: ItemConst, visit_item_enum: ItemEnum, visit_item_fn: ItemFn,
        visit_item_foreign_mod: ItemForeignMod, visit_item_impl: ItemImpl,
        visit_item_macro: ItemMacro, visit_item_static: ItemStatic, visit_item_struct: ItemStruct,
        visit_item_trait: ItemTrait, visit_item_trait_alias: ItemTraitAlias,
        visit_item_type: ItemType, visit_item_union: ItemUnion,
        visit_impl_item_const: ImplItemConst, visit_impl_item_fn: ImplItemFn,
        visit_impl_item_macro: ImplItemMacro, visit_impl_item_type: ImplItemType,
        visit_trait_item_const: TraitItemConst, visit_trait_item_fn: TraitItemFn,
        visit_trait_item_macro: TraitItemMacro, visit_trait_item_type: TraitItemType,
        visit_field: Field, visit_variant: Variant, visit_arm: Arm, visit_local: Local,
        visit_field_value: FieldValue, visit_stmt_macro: StmtMacro,
    );

    fn visit_item_use(&mut self, node: &'ast syn::ItemUse) {
        if cfg_of(&node.attrs) != Cfg::TestOnly {
            self.read_use(&node.tree, &[]);
        }
    }

    fn visit_item_extern_crate(&mut self, node: &'ast syn::ItemExternCrate) {
        if cfg_of(&node.attrs) != Cfg::TestOnly {
            let name = node.ident.to_string();
            self.name(vec![name.clone()], Some(name), line(&node.ident));
        }
    }

    fn visit_item_mod(&mut self, node: &'ast syn::ItemMod) {
        let (cfg, dir) = (cfg_of(&node.attrs), format!("{}/{}", self.dir, node.ident));
        match &node.content {
            None => {
                let (name, line) = (node.ident.to_string(), line(&node.ident));
                self.modules.push(Declared {
                    name,
                    dir,
                    cfg,
                    line,
                });
            }
            Some((_, items)) if cfg != Cfg::TestOnly => {
                let outer = std::mem::replace(&mut self.dir, dir);
                self.depth += 1;
                items.iter().for_each(|item| self.visit_item(item));
                self.depth -= 1;
                self.dir = outer;
            }
            Some(_) => {}
        }
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments = path.segments.iter().map(|s| s.ident.to_string()).collect();
        let line = path.segments.first().map_or(0, |s| line(&s.ident));
        self.name(segments, None, line);
        visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.visit_path(&mac.path);
        self.read_tokens(mac.tokens.clone());
    }
}
