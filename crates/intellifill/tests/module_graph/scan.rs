//! Reads one Rust source file and lists the module paths its `crate::` and `super::` paths name.
//!
//! A small lexer drops comments (doc comments included), string and char literals, so only code is read;
//! items under `#[cfg(test)]` are skipped whole, and `#[cfg(test)] mod x;` marks the file of `x` as test-only.

/// One `crate::...` or `super::...` path in code, made absolute (`super` resolved against the enclosing module).
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    pub line: usize,
    /// Every segment after the crate root: `crate::audit::SecurityKind` gives `["audit", "SecurityKind"]`.
    pub path: Vec<String>,
    /// The path as written, one leaf of a `use` tree: `super::{a, b}` gives `super::a` and `super::b`.
    pub text: String,
}

/// What one file contributes: its references and the absolute paths of the child modules it declares test-only.
#[derive(Debug, Default)]
pub struct Scan {
    pub references: Vec<Reference>,
    pub test_modules: Vec<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// `::`
    Sep,
    Punct(char),
}

struct Token {
    tok: Tok,
    line: usize,
}

/// Scans the source of the file that is module `module` (`[]` for the crate root).
pub fn scan(source: &str, module: &[String]) -> Scan {
    Walker { toks: lex(source), module: module.to_vec(), inline: Vec::new(), depth: 0, scan: Scan::default() }.run()
}

struct Walker {
    toks: Vec<Token>,
    module: Vec<String>,
    /// Inline `mod x { ... }` blocks open at this point, with the brace depth each one opened at.
    inline: Vec<(String, usize)>,
    depth: usize,
    scan: Scan,
}

impl Walker {
    fn tok(&self, i: usize) -> Option<&Tok> {
        self.toks.get(i).map(|t| &t.tok)
    }

    fn ident(&self, i: usize) -> Option<&str> {
        match self.tok(i) {
            Some(Tok::Ident(s)) => Some(s),
            _ => None,
        }
    }

    fn current_module(&self) -> Vec<String> {
        self.module.iter().cloned().chain(self.inline.iter().map(|(name, _)| name.clone())).collect()
    }

    fn run(mut self) -> Scan {
        let mut i = 0;
        while i < self.toks.len() {
            i = self.step(i);
        }
        self.scan
    }

    /// Reads the token at `i` and returns the index of the next one to read.
    fn step(&mut self, i: usize) -> usize {
        let after_sep = i > 0 && matches!(self.tok(i - 1), Some(Tok::Sep | Tok::Punct('$')));
        match self.tok(i).cloned() {
            Some(Tok::Punct('#')) if self.tok(i + 1) == Some(&Tok::Punct('[')) => {
                let end = self.group_end(i + 1);
                if self.is_cfg_test(i + 2, end) { self.skip_test_item(end) } else { i + 1 }
            }
            Some(Tok::Ident(kw)) if kw == "mod" && self.tok(i + 2) == Some(&Tok::Punct('{')) => {
                let name = self.ident(i + 1).unwrap_or_default().to_owned();
                self.inline.push((name, self.depth));
                self.depth += 1;
                i + 3
            }
            Some(Tok::Punct('{')) => {
                self.depth += 1;
                i + 1
            }
            Some(Tok::Punct('}')) => {
                self.depth = self.depth.saturating_sub(1);
                if self.inline.last().is_some_and(|(_, d)| *d == self.depth) {
                    self.inline.pop();
                }
                i + 1
            }
            Some(Tok::Ident(root)) if !after_sep && self.tok(i + 1) == Some(&Tok::Sep) => match root.as_str() {
                "crate" => self.path(i + 2, Vec::new(), "crate".to_owned()),
                "super" => {
                    let (mut base, mut text, mut j) = (self.current_module(), "super".to_owned(), i + 2);
                    base.pop();
                    while self.ident(j) == Some("super") && self.tok(j + 1) == Some(&Tok::Sep) {
                        base.pop();
                        text.push_str("::super");
                        j += 2;
                    }
                    self.path(j, base, text)
                }
                _ => i + 1,
            },
            _ => i + 1,
        }
    }

    /// Records every leaf of the path (or `use` tree) starting at `i` under `base`; returns the index after it.
    fn path(&mut self, i: usize, base: Vec<String>, text: String) -> usize {
        let line = self.toks[i - 1].line;
        let mut leaves = Vec::new();
        let end = self.tree(i, (base, text), &mut leaves);
        self.scan.references.extend(leaves.into_iter().map(|(path, text)| Reference { line, path, text }));
        end
    }

    fn tree(
        &self,
        mut i: usize,
        (mut path, mut text): (Vec<String>, String),
        out: &mut Vec<(Vec<String>, String)>,
    ) -> usize {
        loop {
            match self.tok(i) {
                Some(Tok::Ident(seg)) => {
                    if seg != "self" {
                        path.push(seg.clone());
                    }
                    text = format!("{text}::{seg}");
                    i += 1;
                    if self.tok(i) != Some(&Tok::Sep) {
                        out.push((path, text));
                        return i;
                    }
                    i += 1;
                }
                Some(Tok::Punct('{')) => {
                    i += 1;
                    while !matches!(self.tok(i), Some(Tok::Punct('}')) | None) {
                        let next = self.tree(i, (path.clone(), text.clone()), out);
                        i = if self.ident(next) == Some("as") { next + 2 } else { next.max(i + 1) };
                        if self.tok(i) == Some(&Tok::Punct(',')) {
                            i += 1;
                        }
                    }
                    return i + 1;
                }
                Some(Tok::Punct('*')) => {
                    out.push((path, format!("{text}::*")));
                    return i + 1;
                }
                _ => {
                    out.push((path, text));
                    return i;
                }
            }
        }
    }

    /// The index after the bracket group opening at `open`.
    fn group_end(&self, open: usize) -> usize {
        let mut depth = 0usize;
        for i in open..self.toks.len() {
            match self.tok(i) {
                Some(Tok::Punct('(' | '[' | '{')) => depth += 1,
                Some(Tok::Punct(')' | ']' | '}')) => {
                    depth -= 1;
                    if depth == 0 {
                        return i + 1;
                    }
                }
                _ => {}
            }
        }
        self.toks.len()
    }

    /// Whether the attribute body `start..end` is a `cfg` that holds only under test (`test` named, no `not`).
    fn is_cfg_test(&self, start: usize, end: usize) -> bool {
        let idents: Vec<&str> = (start..end).filter_map(|i| self.ident(i)).collect();
        idents.first() == Some(&"cfg") && idents.contains(&"test") && !idents.contains(&"not")
    }

    /// Skips the item after a `#[cfg(test)]` (its further attributes, then up to its `;` or closing `}`).
    fn skip_test_item(&mut self, mut i: usize) -> usize {
        while self.tok(i) == Some(&Tok::Punct('#')) {
            i = self.group_end(i + 1);
        }
        let start = i;
        while let Some(tok) = self.tok(i) {
            match tok {
                Tok::Punct('(' | '[') => i = self.group_end(i),
                Tok::Punct('{') => return self.group_end(i),
                Tok::Punct(';') => {
                    self.note_test_module(start, i);
                    return i + 1;
                }
                _ => i += 1,
            }
        }
        i
    }

    /// Records `mod name;` (after any visibility) in `start..semicolon` as a test-only child module.
    fn note_test_module(&mut self, start: usize, semicolon: usize) {
        if semicolon >= start + 2
            && self.ident(semicolon - 2) == Some("mod")
            && let Some(name) = self.ident(semicolon - 1)
        {
            let mut module = self.current_module();
            module.push(name.to_owned());
            self.scan.test_modules.push(module);
        }
    }
}

fn lex(source: &str) -> Vec<Token> {
    let chars: Vec<char> = source.chars().collect();
    let mut lexer = Lexer { chars, i: 0, line: 1, out: Vec::new() };
    lexer.run();
    lexer.out
}

struct Lexer {
    chars: Vec<char>,
    i: usize,
    line: usize,
    out: Vec<Token>,
}

impl Lexer {
    fn at(&self, i: usize) -> Option<char> {
        self.chars.get(i).copied()
    }

    fn push(&mut self, tok: Tok) {
        self.out.push(Token { tok, line: self.line });
    }

    /// Moves to `to`, counting the line breaks passed.
    fn advance(&mut self, to: usize) {
        let to = to.min(self.chars.len());
        self.line += self.chars[self.i..to].iter().filter(|&&c| c == '\n').count();
        self.i = to;
    }

    fn word_end(&self, from: usize) -> usize {
        (from..self.chars.len()).find(|&j| !is_ident_char(self.chars[j])).unwrap_or(self.chars.len())
    }

    fn run(&mut self) {
        while let Some(c) = self.at(self.i) {
            let next = self.at(self.i + 1);
            match c {
                '/' if next == Some('/') => {
                    let end = (self.i..self.chars.len()).find(|&j| self.chars[j] == '\n').unwrap_or(self.chars.len());
                    self.advance(end);
                }
                '/' if next == Some('*') => self.block_comment(),
                '"' => self.string(self.i + 1),
                '\'' => self.quote(),
                ':' if next == Some(':') => {
                    self.push(Tok::Sep);
                    self.i += 2;
                }
                c if c.is_alphabetic() || c == '_' => self.word(),
                c if c.is_ascii_digit() => {
                    let end = self.word_end(self.i);
                    self.advance(end);
                }
                c if c.is_whitespace() => self.advance(self.i + 1),
                c => {
                    self.push(Tok::Punct(c));
                    self.i += 1;
                }
            }
        }
    }

    fn block_comment(&mut self) {
        let (mut j, mut depth) = (self.i, 0usize);
        while j < self.chars.len() {
            match (self.chars[j], self.at(j + 1)) {
                ('/', Some('*')) => (depth, j) = (depth + 1, j + 2),
                ('*', Some('/')) => {
                    (depth, j) = (depth - 1, j + 2);
                    if depth == 0 {
                        break;
                    }
                }
                _ => j += 1,
            }
        }
        self.advance(j);
    }

    /// A string body starting at `from` (after the opening quote), with backslash escapes.
    fn string(&mut self, from: usize) {
        let mut j = from;
        while let Some(c) = self.at(j) {
            match c {
                '\\' => j += 2,
                '"' => break,
                _ => j += 1,
            }
        }
        self.advance(j + 1);
    }

    /// A char literal (`'x'`, `'\n'`, `'\u{..}'`) or a lifetime (`'a`, left as the word after it).
    fn quote(&mut self) {
        let i = self.i;
        if self.at(i + 1) == Some('\\') {
            let close = (i + 3..self.chars.len()).find(|&j| self.chars[j] == '\'').unwrap_or(self.chars.len());
            self.advance(close + 1);
        } else if self.at(i + 2) == Some('\'') {
            self.advance(i + 3);
        } else {
            self.i += 1;
        }
    }

    /// An identifier or keyword, or the prefix of a byte/raw/C string, a byte char or a raw identifier.
    fn word(&mut self) {
        let end = self.word_end(self.i);
        let word: String = self.chars[self.i..end].iter().collect();
        let hashes = (end..self.chars.len()).take_while(|&j| self.chars[j] == '#').count();
        match (word.as_str(), self.at(end)) {
            ("r" | "br" | "cr", Some('"' | '#')) if self.at(end + hashes) == Some('"') => {
                let closing: Vec<char> = std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
                let body = end + hashes + 1;
                let close = (body..self.chars.len())
                    .find(|&j| self.chars[j..].starts_with(&closing))
                    .unwrap_or(self.chars.len());
                self.advance(close + closing.len());
            }
            ("b" | "c", Some('"')) => {
                self.i = end;
                self.string(end + 1);
            }
            ("b", Some('\'')) => {
                self.i = end;
                self.quote();
            }
            ("r", Some('#')) if hashes == 1 && self.at(end + 1).is_some_and(is_ident_char) => {
                let raw_end = self.word_end(end + 1);
                let raw: String = self.chars[end + 1..raw_end].iter().collect();
                self.push(Tok::Ident(raw));
                self.i = raw_end;
            }
            _ => {
                self.push(Tok::Ident(word));
                self.i = end;
            }
        }
    }
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}
