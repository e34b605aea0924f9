//! Building a string from a source with some spans replaced, while following one source position (where a
//! value cut by the scan budget ends) into the output; and the char classes the scanners share.

/// Replaces spans of `src` (given left to right, not overlapping) and maps the cut position.
///
/// A replaced span that straddles the cut is kept whole (it was scanned in full); one that starts at or after
/// the cut ends up after the mapped cut, so it is dropped with the rest.
pub(super) struct Rewriter<'a> {
    src: &'a str,
    out: String,
    last: usize,
    cut: Option<usize>,
    mapped: Option<usize>,
    hits: usize,
}

/// The result of one pass.
pub(super) struct Rewritten {
    /// The new text, or `None` when nothing was replaced.
    pub(super) text: Option<String>,
    /// The cut position in the new text.
    pub(super) cut: Option<usize>,
    /// Number of spans replaced.
    pub(super) hits: usize,
}

impl<'a> Rewriter<'a> {
    pub(super) fn new(src: &'a str, cut: Option<usize>) -> Self {
        Self { src, out: String::new(), last: 0, cut, mapped: None, hits: 0 }
    }

    /// End of the last replaced span (0 before any).
    pub(super) fn last(&self) -> usize {
        self.last
    }

    /// Replace `src[start..end]` with `label`; `start` must not precede the end of the previous span.
    pub(super) fn replace(&mut self, start: usize, end: usize, label: &str) {
        debug_assert!(self.last <= start && start <= end, "spans are given in order");
        if self.out.capacity() == 0 {
            self.out.reserve(self.src.len() + 16);
        }
        self.out.push_str(&self.src[self.last..start]);
        if let Some(c) = self.cut.take_if(|c| *c < end) {
            self.mapped = Some(if c <= start { self.out.len() - (start - c) } else { self.out.len() + label.len() });
        }
        self.out.push_str(label);
        self.last = end;
        self.hits += 1;
    }

    pub(super) fn finish(mut self) -> Rewritten {
        if self.hits == 0 {
            return Rewritten { text: None, cut: self.cut, hits: 0 };
        }
        self.out.push_str(&self.src[self.last..]);
        let cut = match self.cut {
            Some(c) => Some(self.out.len() - (self.src.len() - c)),
            None => self.mapped,
        };
        Rewritten { text: Some(self.out), cut, hits: self.hits }
    }
}

/// A string going through the passes of the pipeline.
pub(super) struct Scrub {
    pub(super) text: String,
    pub(super) cut: Option<usize>,
    pub(super) hits: usize,
}

impl Scrub {
    pub(super) fn new(text: String, cut: Option<usize>) -> Self {
        Self { text, cut, hits: 0 }
    }

    /// Run one pass over the current text.
    pub(super) fn then(mut self, pass: impl FnOnce(&str, Option<usize>) -> Rewritten) -> Self {
        let r = pass(&self.text, self.cut);
        if let Some(text) = r.text {
            self.text = text;
        }
        self.cut = r.cut;
        self.hits += r.hits;
        self
    }
}

pub(super) fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

pub(super) fn char_before(text: &str, idx: usize) -> Option<char> {
    text[..idx].chars().next_back()
}

pub(super) fn char_at(text: &str, idx: usize) -> Option<char> {
    text.get(idx..).and_then(|t| t.chars().next())
}

/// End of the run of ASCII alphanumerics starting at `i`.
pub(super) fn alnum_run_end(b: &[u8], i: usize) -> usize {
    i + b.get(i..).map_or(0, |t| t.iter().take_while(|c| c.is_ascii_alphanumeric()).count())
}

/// End of the run of ASCII digits starting at `i`.
pub(super) fn digit_run_end(b: &[u8], i: usize) -> usize {
    i + b.get(i..).map_or(0, |t| t.iter().take_while(|c| c.is_ascii_digit()).count())
}

/// Calls `visit(i)` at every char that does not follow a word char, in order. `visit` returns where to go on
/// from (after a replaced span), or `None` to step over the char. After a jump the previous char counts as a
/// word char (a replaced span ends with one).
pub(super) fn each_token_start(text: &str, mut visit: impl FnMut(usize) -> Option<usize>) {
    let b = text.as_bytes();
    let mut i = 0;
    let mut prev_word = false;
    while i < b.len() {
        if !prev_word && let Some(next) = visit(i) {
            i = next;
            prev_word = true;
            continue;
        }
        let c = b[i];
        if c < 0x80 {
            prev_word = c.is_ascii_alphanumeric() || c == b'_';
            i += 1;
        } else {
            let ch = char_at(text, i).unwrap_or(' ');
            prev_word = is_word_char(ch);
            i += ch.len_utf8();
        }
    }
}
