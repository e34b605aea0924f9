//! Reading one variable: its given text (trimmed; empty counts as unset) or its default from the clap
//! definition of [`ServeArgs`], parsed and range-checked. A bad value is recorded as a [`ConfigProblem`]
//! and parsing goes on, so that one bad value does not hide the next.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::LazyLock;
use std::time::Duration;

use clap::CommandFactory;
use url::Url;

use super::ServeArgs;

/// One problem with one variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub variable: &'static str,
    pub problem: String,
}

/// Every problem found, reported together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigProblem>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration ({} problem(s)):", self.0.len())?;
        for p in &self.0 {
            writeln!(f, "  - {}: {}", p.variable, p.problem)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A section's validated configuration, or every problem found in it.
pub(super) type Section<T> = Result<T, Vec<ConfigProblem>>;

/// Each variable's default as declared on [`ServeArgs`] (`env` name -> `default_value`): the one table of
/// defaults, also used when `ServeArgs` is built in code rather than parsed by clap.
static DEFAULTS: LazyLock<HashMap<String, String>> = LazyLock::new(|| {
    ServeArgs::command()
        .get_arguments()
        .filter_map(|arg| {
            let env = arg.get_env()?.to_str()?.to_owned();
            let default = arg.get_default_values().first()?.to_str()?.to_owned();
            Some((env, default))
        })
        .collect()
});

/// The default of `variable` (by its environment name), if it has one.
pub(super) fn default_of(variable: &str) -> Option<&'static str> {
    DEFAULTS.get(variable).map(String::as_str)
}

/// Collects the problems of one section while its values are parsed.
#[derive(Default)]
pub(super) struct Checker(Vec<ConfigProblem>);

impl Checker {
    pub(super) fn problem(&mut self, variable: &'static str, problem: impl Into<String>) {
        self.0.push(ConfigProblem { variable, problem: problem.into() });
    }

    /// `value` when no problem was found, else the problems.
    pub(super) fn finish<T>(self, value: T) -> Section<T> {
        if self.0.is_empty() { Ok(value) } else { Err(self.0) }
    }

    /// Records that `variable` has no value, and returns `placeholder` (never used: the section fails).
    fn missing<T>(&mut self, variable: &'static str, expected: &str, placeholder: T) -> T {
        self.problem(variable, format!("is required ({expected})"));
        placeholder
    }

    /// The given text, else the default; `None` when there is neither.
    pub(super) fn optional<'a>(&self, variable: &str, value: &'a Option<String>) -> Option<&'a str> {
        value.as_deref().map(str::trim).filter(|v| !v.is_empty()).or_else(|| default_of(variable))
    }

    /// The value parsed by `parse`: the given one, or the default. A given value that does not parse is a
    /// problem (worded by `expected`, which sees the raw text; secrets are never passed to it) and the
    /// default stands in for it.
    fn parsed<T>(
        &mut self,
        variable: &'static str,
        value: &Option<String>,
        parse: impl Fn(&str) -> Option<T>,
        expected: impl FnOnce(&str) -> String,
    ) -> Option<T> {
        let default = || default_of(variable).and_then(&parse);
        match value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            None => default(),
            Some(raw) => parse(raw).or_else(|| {
                self.problem(variable, expected(raw));
                default()
            }),
        }
    }

    pub(super) fn required(
        &mut self,
        variable: &'static str,
        value: &Option<String>,
        expected: &str,
    ) -> Option<String> {
        match self.optional(variable, value) {
            Some(v) => Some(v.to_owned()),
            None => self.missing(variable, expected, None),
        }
    }

    /// A number within `range` (inclusive).
    pub(super) fn number<T>(&mut self, variable: &'static str, value: &Option<String>, range: (T, T)) -> T
    where
        T: FromStr + PartialOrd + Copy + fmt::Display,
    {
        let expected = format!("a whole number from {} to {}", range.0, range.1);
        let in_range = |raw: &str| raw.parse::<T>().ok().filter(|v| *v >= range.0 && *v <= range.1);
        match self.parsed(variable, value, in_range, |raw| format!("expected {expected}, got {raw:?}")) {
            Some(v) => v,
            None => self.missing(variable, &expected, range.0),
        }
    }

    /// A duration given in milliseconds, from 1 to `max_ms`.
    pub(super) fn millis(&mut self, variable: &'static str, value: &Option<String>, max_ms: u64) -> Duration {
        Duration::from_millis(self.number(variable, value, (1, max_ms)))
    }

    /// A duration given in seconds, within `range`.
    pub(super) fn seconds(&mut self, variable: &'static str, value: &Option<String>, range: (u64, u64)) -> Duration {
        Duration::from_secs(self.number(variable, value, range))
    }

    pub(super) fn boolean(&mut self, variable: &'static str, value: &Option<String>) -> bool {
        let parse = |raw: &str| match raw.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Some(true),
            "0" | "false" | "no" | "off" => Some(false),
            _ => None,
        };
        let expected = |raw: &str| format!("expected true or false, got {:?}", raw.to_ascii_lowercase());
        match self.parsed(variable, value, parse, expected) {
            Some(v) => v,
            None => self.missing(variable, "true or false", false),
        }
    }

    /// Free text: the given value, the default, or empty.
    pub(super) fn text(&self, variable: &str, value: &Option<String>) -> String {
        self.optional(variable, value).unwrap_or_default().to_owned()
    }

    /// An http(s) URL, or `derived` (a default computed from other variables).
    pub(super) fn url(&mut self, variable: &'static str, value: &Option<String>, derived: String) -> String {
        let parse = |raw: &str| is_http_url(raw).then(|| raw.to_owned());
        self.parsed(variable, value, parse, |raw| format!("expected an http(s) URL, got {raw:?}")).unwrap_or(derived)
    }

    /// An `ip:port` address, or `None` when unset; `example` is quoted when the value does not parse.
    pub(super) fn socket_addr(
        &mut self,
        variable: &'static str,
        value: &Option<String>,
        example: &str,
    ) -> Option<SocketAddr> {
        let expected = |raw: &str| format!("expected ip:port such as {example}, got {raw:?}");
        self.parsed(variable, value, |raw| raw.parse().ok(), expected)
    }

    /// One of `options` (case-insensitive).
    pub(super) fn choice<T: Copy>(
        &mut self,
        variable: &'static str,
        value: &Option<String>,
        options: &[(&str, T)],
    ) -> T {
        let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
        let names = names.join(" | ");
        let parse = |raw: &str| {
            let raw = raw.to_ascii_lowercase();
            options.iter().find(|(name, _)| *name == raw).map(|(_, v)| *v)
        };
        let expected = |raw: &str| format!("expected one of {names}, got {:?}", raw.to_ascii_lowercase());
        match self.parsed(variable, value, parse, expected) {
            Some(v) => v,
            None => {
                let placeholder = options.first().map(|(_, v)| *v).expect("a choice has options");
                self.missing(variable, &names, placeholder)
            }
        }
    }
}

/// An absolute http(s) URL with a host.
pub(super) fn is_http_url(raw: &str) -> bool {
    Url::parse(raw).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}
