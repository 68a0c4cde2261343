//! The agent's layering, checked on its sources (`agent/src`):
//!
//! 1. Only `runtime/`, `seam.rs` and `main.rs` mention `crate::runtime` or `actix`: every
//!    other component reaches an actor through a `seam` handle, and none starts one.
//! 2. The top-level modules (files and folders of `agent/src`) sit in [`LAYERS`], and a
//!    module imports only from lower layers: no import cycle among them, and no arrow up.
//! 3. Inside each folder in [`ACYCLIC_FOLDERS`] (`workflow/` first), the files import each
//!    other without a cycle.
//!
//! What counts as an import: a path in code (comments, strings and test code removed)
//! starting with `crate::`, `super::`, `self::` or the name of a child module, resolved
//! against the module of the file it is in; `use` groups (`{a, b::c}`) are expanded. Test
//! code (`tests.rs` files, `#[cfg(test)] mod … { … }`) is left out: a test may use whatever
//! it tests with. A `mod x;` declaration is not an import.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The top-level modules of `agent/src`, lowest layer first. A module may import only from
/// a layer below its own (not from its own: the two objects stay independent, and so do the
/// leaves). A new top-level module fails the check until it is given a layer here.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "leaves",
        &[
            "boxed",
            "errors",
            "metrics",
            "seam",
            "kube_ops",
            "kube_events",
            "conditions",
        ],
    ),
    ("workflow", &["workflow"]),
    ("objects", &["failover_object", "failover_group"]),
    ("tasks", &["tasks"]),
    ("adapter", &["adapter"]),
    ("runtime", &["runtime"]),
];

/// Folders whose files must not import each other in a circle. `kube_ops/` is left out: its
/// files use the shared client of its `mod.rs`, as Rust modules often do, and it is split by
/// another change.
const ACYCLIC_FOLDERS: &[&str] = &[
    "workflow",
    "tasks",
    "failover_object",
    "failover_group",
    "runtime",
];

/// Where `crate::runtime` and `actix` may be mentioned.
fn may_know_actix(rel: &str) -> bool {
    rel.starts_with("runtime/") || rel == "seam.rs" || rel == "main.rs"
}

// ---------------------------------------------------------------------------------------------
// The checks
// ---------------------------------------------------------------------------------------------

#[test]
fn only_the_runtime_and_the_seam_know_actix() {
    let offenders: Vec<String> = sources()
        .iter()
        .filter(|s| !may_know_actix(&s.rel))
        .flat_map(|s| {
            s.text
                .lines()
                .enumerate()
                .filter(|(_, line)| line.contains("crate::runtime") || line.contains("actix"))
                .map(move |(i, line)| format!("{}:{}: {}", s.rel, i + 1, line.trim()))
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "only runtime/, seam.rs and main.rs may mention `crate::runtime` or `actix` (reach actors through seam handles):\n{}",
        offenders.join("\n")
    );
}

#[test]
fn top_level_modules_import_only_from_lower_layers() {
    let sources = sources();
    let problems = layer_problems(&top_level_graph(&sources), LAYERS);
    assert!(
        problems.is_empty(),
        "the agent's layers ({}) are broken:\n{}",
        LAYERS
            .iter()
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()
            .join(" < "),
        problems.join("\n")
    );
}

#[test]
fn files_inside_a_folder_import_each_other_without_a_cycle() {
    let sources = sources();
    for folder in ACYCLIC_FOLDERS {
        let graph = folder_graph(&sources, folder);
        if let Some(cycle) = find_cycle(&graph) {
            panic!(
                "the files of {folder}/ import each other in a circle: {} (`mod` stands for {folder}/mod.rs)",
                cycle.join(" -> ")
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The checker, checked
// ---------------------------------------------------------------------------------------------

#[test]
fn the_checker_resolves_grouped_relative_and_super_paths() {
    let modules: BTreeSet<Vec<String>> = [
        "workflow",
        "workflow/engine",
        "workflow/engine/bound",
        "workflow/context",
        "workflow/definition",
        "tasks",
        "seam",
    ]
    .iter()
    .map(|m| path(m))
    .collect();
    let code = strip_test_modules(&strip_comments_and_strings(
        r#"
        use super::context::{Attempt, StepInfo};
        use crate::{seam::Sender, workflow::definition::{self, Step}};
        mod bound;
        pub use self::bound::BoundStep;
        // use crate::tasks::Nope;
        fn f<'a>(x: &'a str) -> char { let _ = "crate::tasks::Nope"; let _ = bound::g(); 'c' }
        #[cfg(test)]
        mod tests {
            use crate::tasks::AlsoNope;
        }
        "#,
    ));
    let found: BTreeSet<String> = imports(&path("workflow/engine"), &code, &modules)
        .into_iter()
        .map(|p| p.join("/"))
        .collect();
    let want: BTreeSet<String> = [
        "workflow/context/Attempt",
        "workflow/context/StepInfo",
        "seam/Sender",
        "workflow/definition/self",
        "workflow/definition/Step",
        "workflow/engine/bound/BoundStep",
        "workflow/engine/bound/g",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    assert_eq!(found, want);
}

#[test]
fn the_checker_finds_an_arrow_up_a_same_layer_arrow_and_a_cycle() {
    let graph: Graph = [
        ("workflow", &["seam", "tasks"][..]),
        ("tasks", &["workflow"][..]),
        ("failover_object", &["failover_group"][..]),
        ("newcomer", &[][..]),
    ]
    .iter()
    .map(|(from, to)| {
        (
            (*from).to_owned(),
            to.iter().map(|t| (*t).to_owned()).collect(),
        )
    })
    .collect();
    let problems = layer_problems(&graph, LAYERS).join("\n");
    assert!(problems.contains("workflow imports tasks"), "{problems}");
    assert!(
        problems.contains("failover_object imports failover_group"),
        "{problems}"
    );
    assert!(problems.contains("newcomer"), "{problems}");
    assert!(problems.contains("cycle"), "{problems}");
    assert!(!problems.contains("imports seam"), "{problems}");
}

// ---------------------------------------------------------------------------------------------
// Reading the sources
// ---------------------------------------------------------------------------------------------

/// One `.rs` file of `agent/src`.
struct Source {
    /// Path relative to `agent/src`, with `/`.
    rel: String,
    /// Its module path (`workflow/engine.rs` and `workflow/engine/mod.rs`: `workflow::engine`;
    /// `lib.rs`: empty).
    module: Vec<String>,
    /// The text as written.
    text: String,
    /// The code: comments, strings and test modules removed; empty for `tests.rs`.
    code: String,
}

fn sources() -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    collect(&root, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|file| {
            let rel = file
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            let text = std::fs::read_to_string(&file).unwrap();
            let code = if rel == "tests.rs" || rel.ends_with("/tests.rs") {
                String::new()
            } else {
                strip_test_modules(&strip_comments_and_strings(&text))
            };
            Source {
                module: module_of(&rel),
                rel,
                text,
                code,
            }
        })
        .collect()
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

fn path(s: &str) -> Vec<String> {
    s.split('/').map(str::to_owned).collect()
}

fn module_of(rel: &str) -> Vec<String> {
    let mut parts = path(rel.trim_end_matches(".rs"));
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    if parts == ["lib"] || parts == ["main"] {
        parts.clear();
    }
    parts
}

/// `text` with comments replaced by a space and string and character literals emptied
/// (lifetimes are kept as they are).
fn strip_comments_and_strings(text: &str) -> String {
    let b: Vec<char> = text.chars().collect();
    let at = |i: usize, s: &str| s.chars().enumerate().all(|(k, c)| b.get(i + k) == Some(&c));
    let word_before = |i: usize| i > 0 && (b[i - 1].is_alphanumeric() || b[i - 1] == '_');
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        if at(i, "//") {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if at(i, "/*") {
            let mut depth = 0;
            loop {
                if at(i, "/*") {
                    depth += 1;
                    i += 2;
                } else if at(i, "*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if (b[i] == 'r' || at(i, "br")) && !word_before(i) && raw_string_start(&b, i) {
            let start = if b[i] == 'b' { i + 2 } else { i + 1 };
            let hashes = b[start..].iter().take_while(|c| **c == '#').count();
            let close: String = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            i = start + hashes + 1;
            while !at(i, &close) {
                i += 1;
            }
            i += close.len();
            out.push_str("\"\"");
        } else if b[i] == '"' || (at(i, "b\"") && !word_before(i)) {
            i += if b[i] == 'b' { 2 } else { 1 };
            while b[i] != '"' {
                i += if b[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == '\'' && char_literal_len(&b, i).is_some() {
            i += char_literal_len(&b, i).unwrap_or(1);
            out.push_str("' '");
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// True when `r"`, `r#"`, `br"`, … starts at `i`.
fn raw_string_start(b: &[char], i: usize) -> bool {
    let start = if b[i] == 'b' { i + 2 } else { i + 1 };
    let hashes = b[start..].iter().take_while(|c| **c == '#').count();
    b.get(start + hashes) == Some(&'"')
}

/// The length of the character literal at `i` (`'a'`, `'\n'`, `'\u{1F600}'`), `None` for a
/// lifetime or label.
fn char_literal_len(b: &[char], i: usize) -> Option<usize> {
    if b.get(i + 1) == Some(&'\\') {
        let end = b[i + 2..].iter().position(|c| *c == '\'')?;
        return Some(end + 3);
    }
    (b.get(i + 2) == Some(&'\'')).then_some(3)
}

/// `code` without its `#[cfg(test)] mod … { … }` blocks.
fn strip_test_modules(code: &str) -> String {
    let mut out = code.to_owned();
    while let Some(start) = out.find("#[cfg(test)]") {
        let rest = &out[start + "#[cfg(test)]".len()..];
        let decl = rest.trim_start();
        let decl = decl.strip_prefix("pub(crate)").unwrap_or(decl).trim_start();
        let Some(after_mod) = decl.strip_prefix("mod ") else {
            // Another item under cfg(test): not a module; leave it.
            out.replace_range(start..start + "#[cfg(test)]".len(), "");
            continue;
        };
        let open = after_mod.find(['{', ';']).unwrap();
        if after_mod.as_bytes()[open] == b';' {
            // `mod tests;`: the file is left out on its own.
            out.replace_range(start..start + "#[cfg(test)]".len(), "");
            continue;
        }
        let open = out.len() - after_mod.len() + open;
        let mut depth = 0;
        let mut end = open;
        for (k, c) in out[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + k + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.replace_range(start..end, "");
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Imports
// ---------------------------------------------------------------------------------------------

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Every path `code` (of module `module`) names, resolved to a path from the crate root.
/// `modules` lists the crate's modules, for paths that start with a child module's name.
fn imports(module: &[String], code: &str, modules: &BTreeSet<Vec<String>>) -> Vec<Vec<String>> {
    let b: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let starts_word = b[i].is_alphabetic() || b[i] == '_';
        let preceded = i > 0 && (is_ident_char(b[i - 1]) || b[i - 1] == '$' || b[i - 1] == ':');
        if !starts_word || preceded {
            i += 1;
            continue;
        }
        let word: String = b[i..].iter().take_while(|c| is_ident_char(**c)).collect();
        let after = i + word.chars().count();
        let j = skip_ws(&b, after);
        let mut child = module.to_vec();
        child.push(word.clone());
        let base = match word.as_str() {
            "crate" => Some(Vec::new()),
            "self" => Some(module.to_vec()),
            "super" => Some(module[..module.len().saturating_sub(1)].to_vec()),
            _ if modules.contains(&child) => Some(module.to_vec()),
            _ => None,
        };
        match base {
            Some(base) if b.get(j) == Some(&':') && b.get(j + 1) == Some(&':') => {
                let relative = !matches!(word.as_str(), "crate" | "self" | "super");
                let (tails, end) = parse_tree(&b, if relative { i } else { j + 2 });
                for tail in tails {
                    let mut full = base.clone();
                    for seg in tail {
                        if seg == "super" {
                            full.pop();
                        } else {
                            full.push(seg);
                        }
                    }
                    out.push(full);
                }
                i = end;
            }
            _ => i = after,
        }
    }
    out
}

fn skip_ws(b: &[char], mut i: usize) -> usize {
    while b.get(i).is_some_and(|c| c.is_whitespace()) {
        i += 1;
    }
    i
}

/// The paths of a `use` tree (or of an expression path) starting at `i`: `a::b`, `a::{b, c::d}`,
/// `a::*`. Returns them and where the tree ends.
fn parse_tree(b: &[char], i: usize) -> (Vec<Vec<String>>, usize) {
    let i = skip_ws(b, i);
    match b.get(i) {
        Some('{') => {
            let mut paths = Vec::new();
            let mut i = i + 1;
            loop {
                i = skip_ws(b, i);
                match b.get(i) {
                    Some(',') => i += 1,
                    Some('}') | None => return (paths, i + 1),
                    _ => {
                        let (sub, end) = parse_tree(b, i);
                        paths.extend(sub);
                        i = end.max(i + 1);
                    }
                }
            }
        }
        Some('*') => (vec![vec!["*".to_owned()]], i + 1),
        _ => {
            let word: String = b[i..].iter().take_while(|c| is_ident_char(**c)).collect();
            if word.is_empty() {
                return (vec![Vec::new()], i);
            }
            let after = i + word.chars().count();
            let j = skip_ws(b, after);
            if b.get(j) == Some(&':') && b.get(j + 1) == Some(&':') {
                let (subs, end) = parse_tree(b, j + 2);
                let paths = subs
                    .into_iter()
                    .map(|mut p| {
                        p.insert(0, word.clone());
                        p
                    })
                    .collect();
                (paths, end)
            } else {
                (vec![vec![word]], after)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Graphs
// ---------------------------------------------------------------------------------------------

type Graph = BTreeMap<String, BTreeSet<String>>;

fn all_modules(sources: &[Source]) -> BTreeSet<Vec<String>> {
    sources
        .iter()
        .filter(|s| !s.module.is_empty())
        .map(|s| s.module.clone())
        .collect()
}

/// Top-level module → the other top-level modules it imports from.
fn top_level_graph(sources: &[Source]) -> Graph {
    let modules = all_modules(sources);
    let tops: BTreeSet<&String> = modules.iter().map(|m| &m[0]).collect();
    let mut graph = Graph::new();
    for s in sources.iter().filter(|s| !s.module.is_empty()) {
        let from = &s.module[0];
        let entry = graph.entry(from.clone()).or_default();
        for target in imports(&s.module, &s.code, &modules) {
            if let Some(to) = target.first()
                && to != from
                && tops.contains(to)
            {
                entry.insert(to.clone());
            }
        }
    }
    graph
}

/// Inside `folder/`: child (file or sub-folder; `mod` for `folder/mod.rs`) → the children it
/// imports from.
fn folder_graph(sources: &[Source], folder: &str) -> Graph {
    let modules = all_modules(sources);
    let node = |m: &[String]| -> Option<String> {
        if m.first().map(String::as_str) != Some(folder) {
            return None;
        }
        Some(match m.get(1) {
            Some(child) if modules.contains(&m[..2]) => child.clone(),
            _ => "mod".to_owned(),
        })
    };
    let mut graph = Graph::new();
    for s in sources {
        let Some(from) = node(&s.module) else {
            continue;
        };
        let entry = graph.entry(from.clone()).or_default();
        for target in imports(&s.module, &s.code, &modules) {
            if let Some(to) = node(&target)
                && to != from
            {
                entry.insert(to);
            }
        }
    }
    graph
}

/// What breaks `layers` in `graph`: a module in no layer, an import of a module in the same
/// or a higher layer, a cycle.
fn layer_problems(graph: &Graph, layers: &[(&str, &[&str])]) -> Vec<String> {
    let layer_of = |m: &str| layers.iter().position(|(_, ms)| ms.contains(&m));
    let mut problems = Vec::new();
    for (from, targets) in graph {
        let Some(lf) = layer_of(from) else {
            problems.push(format!(
                "{from} is in no layer: add it to LAYERS in agent/tests/layering.rs"
            ));
            continue;
        };
        for to in targets {
            match layer_of(to) {
                Some(lt) if lt < lf => {}
                Some(lt) => problems.push(format!(
                    "{from} imports {to}, but {from} is in layer `{}` and {to} in `{}`, not below it",
                    layers[lf].0, layers[lt].0
                )),
                None => problems.push(format!("{from} imports {to}, which is in no layer")),
            }
        }
    }
    if let Some(cycle) = find_cycle(graph) {
        problems.push(format!("import cycle: {}", cycle.join(" -> ")));
    }
    problems
}

/// A cycle of `graph`, as the nodes along it (first = last), if it has one.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        done: &mut BTreeSet<String>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, done, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut done, &mut Vec::new()))
}
