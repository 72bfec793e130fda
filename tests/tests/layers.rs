//! The kernel's modules import each other as a tree, layer on layer (docs/ARCHITECTURE.md,
//! "Layers"): no module reaches, through its `use` and `crate::`/`super::` paths, a module that
//! reaches it back. A host test over the kernel's source; it needs no image.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The module path of a source file under kernel/src (`arch::aarch64::gic`, `syscall`).
fn module_of(rel: &Path) -> String {
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    parts.join("::")
}

fn sources(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).expect("read kernel/src") {
        let path = entry.expect("a directory entry").path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        // Tests may reach anything.
        if name == "tests" || name.ends_with("tests.rs") || name == "tests.rs" {
            continue;
        }
        if path.is_dir() {
            sources(&path, root, out);
        } else if name.ends_with(".rs") && name != "main.rs" {
            let text = std::fs::read_to_string(&path).expect("read a source file");
            // Only the code before a file's unit tests.
            let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("").to_string();
            out.push((module_of(path.strip_prefix(root).expect("under kernel/src")), code));
        }
    }
}

/// The paths a line names: `crate::a::b`, `super::a`, and the names in `use super::{a, b}`.
fn named_paths(module: &str, line: &str) -> Vec<String> {
    let parent = module.rsplit_once("::").map_or("", |(p, _)| p).to_string();
    let ident = |s: &str| s.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':').collect::<String>();
    let mut out = Vec::new();
    for (i, _) in line.match_indices("crate::") {
        out.push(ident(&line[i + 7..]).trim_end_matches(':').to_string());
    }
    for (i, _) in line.match_indices("super::") {
        let rest = &line[i + 7..];
        if let Some(group) = rest.strip_prefix('{') {
            for name in group.split('}').next().unwrap_or("").split(',') {
                let n = ident(name.trim());
                if !n.is_empty() {
                    out.push(join(&parent, &n));
                }
            }
        } else {
            out.push(join(&parent, ident(rest).trim_end_matches(':')));
        }
    }
    out
}

fn join(a: &str, b: &str) -> String {
    if a.is_empty() { b.to_string() } else { format!("{a}::{b}") }
}

#[test]
fn kernel_modules_import_each_other_as_a_tree() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernel/src");
    let mut files = Vec::new();
    sources(&root, &root, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|(m, _)| m.clone()).collect();
    // A named path's module: its longest prefix that is a module.
    let resolve = |path: &str| {
        let mut p = path.to_string();
        loop {
            if modules.contains(&p) {
                return Some(p);
            }
            p = p.rsplit_once("::")?.0.to_string();
        }
    };
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, code) in &files {
        for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
            // `hal` chooses its implementation by target: a re-export, not a dependency.
            if module == "hal" && line.contains("pub use crate::arch::aarch64::hal::*") {
                continue;
            }
            for path in named_paths(module, line) {
                let Some(to) = resolve(&path) else { continue };
                // A module and its own ancestors or descendants are one unit.
                let related = to.is_empty() || *module == to || module.starts_with(&format!("{to}::")) || to.starts_with(&format!("{module}::"));
                if !related {
                    edges.entry(module.clone()).or_default().insert(to);
                }
            }
        }
    }
    // Depth-first search for a path back to where it started.
    let mut cycles = Vec::new();
    for start in edges.keys() {
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((at, path)) = stack.pop() {
            for next in edges.get(&at).into_iter().flatten() {
                if next == start {
                    cycles.push(format!("{} -> {start}", path.join(" -> ")));
                } else if seen.insert(next.clone()) {
                    let mut p = path.clone();
                    p.push(next.clone());
                    stack.push((next.clone(), p));
                }
            }
        }
    }
    assert!(edges.len() > 20, "the parser found only {} importing modules: it is broken", edges.len());
    assert!(cycles.is_empty(), "kernel modules that import each other (make the layers a tree):\n{}", cycles.join("\n"));
}
