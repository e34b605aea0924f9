//! README.md's configuration tables and `.env.example` document every variable of [`ServeArgs`] with the
//! default of its clap definition, and nothing that does not exist.
//!
//! Rules, for a variable with a default `D`: README's default cell is `` `D` `` and `.env.example` has
//! `VAR=D` (or `# VAR=D`). For a required variable (one [`Config::from_args`] reports as required when
//! absent): README says `required` and `.env.example` sets an example value, uncommented. For any other
//! variable without a default: README says `unset` or shows the derived default as `` `<...>` ``, and
//! `.env.example` leaves it commented out or empty.

use std::collections::BTreeMap;

use clap::CommandFactory;

use super::{Config, ServeArgs};

/// Variables read by other commands or by the logger, documented in the same places.
const READ_ELSEWHERE: &[&str] = &[
    "DATABASE_MIGRATION_URL",
    "LOG_FORMAT",
    "RUST_LOG",
    "AUDIT_RETENTION_SECURITY_DAYS",
    "AUDIT_RETENTION_WRITE_DAYS",
    "AUDIT_RETENTION_READ_DAYS",
];

/// One variable of the clap definition.
struct Variable {
    name: String,
    default: Option<String>,
    required: bool,
}

fn variables() -> Vec<Variable> {
    let problems = Config::from_args(&ServeArgs::default()).expect_err("required variables are missing").0;
    let required: Vec<&str> =
        problems.iter().filter(|p| p.problem.starts_with("is required")).map(|p| p.variable).collect();
    let command = ServeArgs::command();
    let vars: Vec<Variable> = command
        .get_arguments()
        .filter_map(|arg| {
            let name = arg.get_env()?.to_str().expect("ascii name").to_owned();
            let default = arg.get_default_values().first().map(|d| d.to_str().expect("utf-8 default").to_owned());
            let required = required.contains(&name.as_str());
            Some(Variable { name, default, required })
        })
        .collect();
    assert!(vars.len() > 40, "the clap definition was not walked: {} variables", vars.len());
    vars
}

fn repository_file(name: &str) -> String {
    let path = format!("{}/../../{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// `(variable, default cell)` of every table row under README's "## Configuration".
fn readme_rows(readme: &str) -> Vec<(String, String)> {
    let section = readme.split("\n## Configuration\n").nth(1).expect("README has a Configuration section");
    let section = section.split("\n## ").next().unwrap_or(section);
    section
        .lines()
        .filter(|line| line.starts_with("| `"))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            (cells[1].trim_matches('`').to_owned(), cells[2].to_owned())
        })
        .collect()
}

/// `(variable, value, commented out)` of every `VAR=value` or `# VAR=value` line.
fn env_example_lines(text: &str) -> Vec<(String, String, bool)> {
    text.lines()
        .filter_map(|line| {
            let (commented, rest) = match line.strip_prefix("# ") {
                Some(rest) => (true, rest),
                None => (false, line),
            };
            let (name, value) = rest.split_once('=')?;
            let is_name = !name.is_empty()
                && name.starts_with(|c: char| c.is_ascii_uppercase())
                && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            is_name.then(|| (name.to_owned(), value.to_owned(), commented))
        })
        .collect()
}

/// Names documented more than once, or documented but not a variable.
fn unknown_or_repeated<'a>(file: &str, names: impl Iterator<Item = &'a str>, vars: &[Variable]) -> Vec<String> {
    let mut seen = BTreeMap::new();
    for name in names {
        *seen.entry(name).or_insert(0) += 1;
    }
    let mut errors = Vec::new();
    for (name, count) in seen {
        if count > 1 {
            errors.push(format!("{file}: {name} is documented {count} times"));
        }
        if !vars.iter().any(|v| v.name == name) && !READ_ELSEWHERE.contains(&name) {
            errors.push(format!("{file}: {name} is documented but is not a variable of `serve`"));
        }
    }
    errors
}

#[test]
fn readme_documents_every_variable_with_its_default() {
    let vars = variables();
    let rows = readme_rows(&repository_file("README.md"));
    let mut errors = unknown_or_repeated("README.md", rows.iter().map(|(n, _)| n.as_str()), &vars);
    for var in &vars {
        let Some((_, cell)) = rows.iter().find(|(name, _)| *name == var.name) else {
            errors.push(format!("README.md: {} has no row", var.name));
            continue;
        };
        let ok = match (&var.default, var.required) {
            (Some(default), _) => *cell == format!("`{default}`"),
            (None, true) => cell == "required",
            (None, false) => cell == "unset" || cell.starts_with("`<"),
        };
        if !ok {
            let expected = match (&var.default, var.required) {
                (Some(default), _) => format!("`{default}`"),
                (None, true) => "required".to_owned(),
                (None, false) => "unset or `<derived>`".to_owned(),
            };
            errors.push(format!("README.md: {} default is {cell:?}, expected {expected}", var.name));
        }
    }
    assert!(errors.is_empty(), "\n{}", errors.join("\n"));
}

#[test]
fn env_example_documents_every_variable_with_its_default() {
    let vars = variables();
    let lines = env_example_lines(&repository_file(".env.example"));
    let mut errors = unknown_or_repeated(".env.example", lines.iter().map(|(n, _, _)| n.as_str()), &vars);
    for var in &vars {
        let Some((_, value, commented)) = lines.iter().find(|(name, _, _)| *name == var.name) else {
            errors.push(format!(".env.example: {} is missing", var.name));
            continue;
        };
        match (&var.default, var.required) {
            (Some(default), _) if value != default => {
                errors.push(format!(".env.example: {}={value}, but its default is {default:?}", var.name));
            }
            (None, true) if *commented => {
                errors.push(format!(".env.example: {} is required, so it must not be commented out", var.name));
            }
            (None, false) if !*commented && !value.is_empty() => {
                errors.push(format!(".env.example: {} has no default, so its example must be commented out", var.name));
            }
            _ => {}
        }
    }
    assert!(errors.is_empty(), "\n{}", errors.join("\n"));
}
