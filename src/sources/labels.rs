//! A series' labels as one string, `name\u{1f}value\u{1e}` per label, sorted: the series' key as
//! the state keeps it, built once by the decoder. A request of 2,000 series with 4 labels each
//! had the decoder allocate 16,000 strings and the conversion join them twice more (for the
//! resolution cache and the series state); now a series is one allocation and no joining.

/// Ends a label's name.
const NAME_END: char = '\u{1f}';
/// Ends a label's value.
const VALUE_END: char = '\u{1e}';

/// Sorted labels, `__name__` among them. Separators inside a name or value (control
/// characters no exporter sends) become U+FFFD, so that every label set has one key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(String);

impl Labels {
    /// Labels in any order; sorted ones (a `BTreeMap`'s order) are taken as they come.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (impl AsRef<str>, impl AsRef<str>)>) -> Self {
        let mut builder = Builder::with_capacity(64);
        for (name, value) in pairs {
            builder.push(name.as_ref().as_bytes(), value.as_ref().as_bytes());
        }
        // Text pushed as `str` is UTF-8, so there always are labels.
        builder.finish().unwrap_or_default()
    }

    /// The key the series' state is kept under.
    pub fn key(&self) -> &str {
        &self.0
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        // Every label has its name end: the builder writes both separators.
        (self.0.split_terminator(VALUE_END)).filter_map(|label| label.split_once(NAME_END))
    }
}

/// Labels as a decoder meets them, as bytes (checked for UTF-8 once, at the end, rather than
/// label by label): usually sorted (Prometheus sends them so), sorted at the end when not.
pub struct Builder {
    text: Vec<u8>,
    sorted: bool,
    last_name: std::ops::Range<usize>,
    named: bool,
}

impl Builder {
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            text: Vec::with_capacity(bytes),
            sorted: true,
            last_name: 0..0,
            named: false,
        }
    }

    pub fn push(&mut self, name: &[u8], value: &[u8]) {
        let start = self.text.len();
        push_escaped(&mut self.text, name);
        let name_at = start..self.text.len();
        if self.sorted && start > 0 {
            let previous = &self.text[self.last_name.clone()];
            let current = &self.text[name_at.clone()];
            self.sorted = previous < current;
        }
        self.named |= name == b"__name__";
        self.last_name = name_at;
        self.text.push(NAME_END as u8);
        push_escaped(&mut self.text, value);
        self.text.push(VALUE_END as u8);
    }

    /// Whether a `__name__` label was pushed.
    pub fn names_metric(&self) -> bool {
        self.named
    }

    /// The labels; `None` when a name or value was not UTF-8.
    pub fn finish(self) -> Option<Labels> {
        let labels = Labels(String::from_utf8(self.text).ok()?);
        if self.sorted {
            return Some(labels);
        }
        let mut pairs: Vec<_> = labels.iter().collect();
        pairs.sort_unstable();
        Some(Labels::from_pairs(pairs))
    }
}

/// Appends a name or value with its separators replaced (each byte of theirs is a whole UTF-8
/// character, so the rest stays as valid or invalid as it came).
fn push_escaped(text: &mut Vec<u8>, part: &[u8]) {
    // The separators (0x1e, 0x1f) differ only in their lowest bit.
    let separator = |b: u8| b | 1 == NAME_END as u8;
    // A fold without early exit vectorises; names and values without separators are the rule.
    if part.iter().fold(false, |found, &b| found | separator(b)) {
        for &b in part {
            if separator(b) {
                let mut utf8 = [0; 4];
                let replacement = char::REPLACEMENT_CHARACTER.encode_utf8(&mut utf8);
                text.extend_from_slice(replacement.as_bytes());
            } else {
                text.push(b);
            }
        }
    } else {
        text.extend_from_slice(part);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn labels_are_kept_sorted_and_read_back_by_name() {
        let labels = Labels::from_pairs([("zone", "package"), ("__name__", "m"), ("pod", "a")]);
        let pairs: Vec<_> = labels.iter().collect();
        assert_eq!(
            pairs,
            [("__name__", "m"), ("pod", "a"), ("zone", "package")]
        );
        assert_eq!(labels.get("pod"), Some("a"));
        assert_eq!(labels.get("node"), None);
        assert_eq!(
            labels.key(),
            "__name__\u{1f}m\u{1e}pod\u{1f}a\u{1e}zone\u{1f}package\u{1e}"
        );
    }

    #[test]
    fn a_separator_inside_a_value_cannot_forge_another_label() {
        let labels = Labels::from_pairs([("__name__", "m"), ("a", "x\u{1e}b\u{1f}y")]);
        let pairs: Vec<_> = labels.iter().collect();
        assert_eq!(pairs, [("__name__", "m"), ("a", "x\u{fffd}b\u{fffd}y")]);
    }

    #[test]
    fn bytes_that_are_not_utf8_give_no_labels() {
        let mut builder = Builder::with_capacity(0);
        builder.push(b"__name__", b"m");
        assert!(builder.names_metric());
        builder.push(b"a", &[0xff, b'x']);
        assert_eq!(builder.finish(), None);
    }

    proptest! {
        #[test]
        fn any_order_gives_the_same_labels(
            mut pairs in proptest::collection::btree_map("[a-z_]{1,6}", ".{0,8}", 0..8)
                .prop_map(|m| m.into_iter().collect::<Vec<_>>()),
            rotation in 0usize..8,
        ) {
            let sorted = Labels::from_pairs(pairs.clone());
            if !pairs.is_empty() {
                let by = rotation % pairs.len();
                pairs.rotate_left(by);
            }
            let mut builder = Builder::with_capacity(0);
            for (name, value) in &pairs {
                builder.push(name.as_bytes(), value.as_bytes());
            }
            prop_assert_eq!(builder.finish(), Some(sorted));
        }
    }
}
