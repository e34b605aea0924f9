//! The server library's modules import each other without cycles, at two granularities:
//! - files: each `.rs` file under `src/` is a node (`a/b.rs` and `a/b/mod.rs` are module `a::b`); a
//!   `crate::a::b::Item` or `super::Item` path in code is an edge to the deepest module that has a file;
//! - top-level modules: each folder or file directly under `src/` (`http`, `audit`, `state`, ...) is a node
//!   (reported only).
//!
//! Paths in doc comments, comments, literals and `#[cfg(test)]` items don't count; `src/main.rs` is the
//! binary, a crate of its own. On failure every cycle is named with the reference behind each of its edges.
//! Run alone: `cargo nextest run -p intellifill --test module_graph --no-capture`.

mod graph;
mod scan;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use graph::Graph;

/// One source file of the library: its path under `src/` and the module it is.
struct SourceFile {
    name: String,
    module: Vec<String>,
    scan: scan::Scan,
}

fn source_files(src: &Path) -> Vec<SourceFile> {
    let mut paths = Vec::new();
    collect_rs(src, &mut paths);
    let mut files: Vec<SourceFile> = paths
        .into_iter()
        .filter(|path| path != &src.join("main.rs"))
        .map(|path| {
            let name = path.strip_prefix(src).expect("under src").to_string_lossy().replace('\\', "/");
            let module = module_of(&name);
            let source = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {name}: {e}"));
            let scan = scan::scan(&source, &module);
            SourceFile { name, module, scan }
        })
        .collect();
    let test_only: Vec<Vec<String>> = files.iter().flat_map(|f| f.scan.test_modules.clone()).collect();
    files.retain(|f| !test_only.iter().any(|t| f.module.starts_with(t)));
    files.sort_by(|a, b| a.name.cmp(&b.name));
    files
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            collect_rs(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `lib.rs` -> `[]`, `state.rs` -> `[state]`, `a/b.rs` and `a/b/mod.rs` -> `[a, b]`.
fn module_of(name: &str) -> Vec<String> {
    let stem = name.strip_suffix(".rs").expect(".rs file");
    let stem = stem.strip_suffix("/mod").unwrap_or(stem);
    if stem == "lib" { Vec::new() } else { stem.split('/').map(str::to_owned).collect() }
}

/// The file-level graph and the top-level graph of the library under `src`.
fn graphs(src: &Path) -> (Graph, Graph) {
    let files = source_files(src);
    let modules: Vec<(&[String], &str)> = files.iter().map(|f| (&f.module[..], f.name.as_str())).collect();
    let file_of = |path: &[String]| {
        (0..=path.len()).rev().find_map(|k| modules.iter().find(|(m, _)| *m == &path[..k]).map(|(_, name)| *name))
    };
    let top_of = |file: &SourceFile| file.module.first().cloned().unwrap_or_else(|| "crate".to_owned());
    let (mut by_file, mut by_top) = (Graph::default(), Graph::default());
    for file in &files {
        for reference in &file.scan.references {
            let Some(target) = file_of(&reference.path) else { continue };
            let evidence = || format!("{}:{} {}", file.name, reference.line, reference.text);
            by_file.add(&file.name, target, evidence);
            let target_top = files.iter().find(|f| f.name == target).map(top_of).expect("target is a file");
            by_top.add(&top_of(file), &target_top, evidence);
        }
    }
    (by_file, by_top)
}

/// Every cycle as `a -> b -> a`, then the reference behind each of its edges; empty when there is none.
fn report(graph: &Graph) -> String {
    let cycles = graph.cycles();
    let mut out = String::new();
    for cycle in &cycles {
        let names: Vec<&str> = cycle.iter().chain(cycle.first()).map(String::as_str).collect();
        out.push_str(&format!("  {}\n", names.join(" -> ")));
        let mut seen = BTreeSet::new();
        for (from, to, evidence) in graph.edges_of(cycle) {
            if seen.insert((from, to)) {
                out.push_str(&format!("      {from} -> {to}: {evidence}\n"));
            }
        }
    }
    if !cycles.is_empty() {
        out.insert_str(0, &format!("{} cycle(s):\n", cycles.len()));
    }
    out
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Fails on a cycle between files and on a cycle between top-level modules (`http`, `audit`, `auth`, ...: a
/// folder or a top-level file is one node), naming every edge of each.
#[test]
fn source_files_import_each_other_without_cycles() {
    let (by_file, by_top) = graphs(&src_dir());
    let (files, tops) = (report(&by_file), report(&by_top));
    assert!(files.is_empty(), "import cycles between the library's source files (src/):\n{files}");
    assert!(tops.is_empty(), "import cycles between the library's top-level modules (src/):\n{tops}");
}

mod scanner {
    use super::scan::scan;

    fn paths(source: &str, module: &[&str]) -> Vec<String> {
        let module: Vec<String> = module.iter().map(|s| s.to_string()).collect();
        scan(source, &module).references.into_iter().map(|r| r.path.join("::")).collect()
    }

    #[test]
    fn use_trees_expand_to_one_path_per_leaf() {
        let source = "use crate::{a::{self, B}, c::D as E, f::*};\nuse super::super::x::Y;";
        assert_eq!(paths(source, &["m", "n"]), ["a", "a::B", "c::D", "f", "x::Y"]);
    }

    #[test]
    fn paths_in_code_count_and_paths_in_comments_literals_and_test_items_do_not() {
        let source = r####"
            //! See [`crate::doc::Item`].
            /// And [`crate::doc2::Item`] /* crate::block::X */
            fn f() -> crate::ret::T { let _ = "crate::string::S"; let _ = r#"crate::raw::R"#; crate::call::g('a') }
            fn h<'a>(x: &'a str) -> crate::after_lifetime::U { todo!() }
            #[cfg(test)]
            mod tests { use crate::test_only::Z; }
            #[cfg(test)]
            use crate::test_use::W;
            #[cfg(not(test))]
            use crate::not_test::V;
            macro_rules! m { () => { $crate::dollar::Q } }
        "####;
        assert_eq!(paths(source, &[]), ["ret::T", "call::g", "after_lifetime::U", "not_test::V"]);
    }

    #[test]
    fn super_is_resolved_against_inline_modules_and_test_module_files_are_noted() {
        let source = "mod inner { use super::Outer; mod deeper { use super::super::Top; } }\nuse super::Sibling;\n\
                      #[cfg(test)]\nmod tests;";
        assert_eq!(paths(source, &["a", "b"]), ["a::b::Outer", "a::b::Top", "a::Sibling"]);
        let module = vec!["a".to_owned(), "b".to_owned()];
        assert_eq!(scan(source, &module).test_modules, [vec!["a".to_owned(), "b".to_owned(), "tests".to_owned()]]);
    }
}
