//! A table whose keys depend on its `kind` (`[source]`, `[sink]`), read with serde in two steps:
//! its head (the `kind`, and the keys every kind takes), then the rest of the table by that
//! kind's own struct, which refuses every key it does not take (`deny_unknown_fields`).
//!
//! serde's internally tagged enums (`tag = "kind"`) would do both in one step, but their errors
//! lose the key path. Here every error keeps it: a key of another kind is refused as
//! `source.port: is not a key of a `kafka` source`, a key of no kind with serde's own message
//! listing every kind's keys, at its line, and any other error keeps serde's words at its line.
//! These are the messages (and, of several mistakes, the one named first) of the single struct
//! of all keys that the kinds' structs replaced.

use super::file::{JobFile, SpecError};
use serde::Deserialize;
use serde::de::Error as _;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

/// One kinded table of a job file, as parsed (with the spans of its keys and values).
pub(crate) struct Section<'i> {
    /// `source` or `sink`: the table's name, the first part of its keys' paths.
    name: &'static str,
    table: Spanned<DeValue<'i>>,
    /// Every key some kind takes, in the order serde's message for a key of no kind lists them.
    any_kind_keys: &'static [&'static str],
}

impl<'i> Section<'i> {
    /// The table `name` of the document's top level (which serde has required already).
    pub(crate) fn of(
        root: &DeTable<'i>,
        name: &'static str,
        any_kind_keys: &'static [&'static str],
        file: &JobFile,
    ) -> Result<Self, SpecError> {
        let table = root.get(name).cloned().ok_or_else(|| file.err("(syntax)", format!("missing field `{name}`")))?;
        Ok(Section { name, table, any_kind_keys })
    }

    /// The table's head read as `T`: the struct of its `kind` and the keys every kind takes (it
    /// ignores the others).
    pub(crate) fn head<T: Deserialize<'i>>(&self, file: &JobFile) -> Result<T, SpecError> {
        T::deserialize(ValueDeserializer::from(self.table.clone())).map_err(|e| file.serde_error(&e))
    }

    /// Refuses the first key no kind takes, as serde refuses it (for a table whose kind is
    /// unknown, so that no kind's struct reads it).
    pub(crate) fn refuse_keys_of_no_kind(&self, file: &JobFile) -> Result<(), SpecError> {
        if let DeValue::Table(keys) = self.table.get_ref()
            && let Some(key) = keys.keys().find(|k| !self.any_kind_keys.contains(&k.get_ref().as_ref()))
        {
            let refusal = toml::de::Error::unknown_field(key.get_ref(), self.any_kind_keys);
            return Err(file.refused(Some(key.span()), refusal.message()));
        }
        Ok(())
    }

    /// The table without the keys `head` took (its `kind`, and those every kind takes), read as
    /// kind `kind`'s own struct `T`, which refuses the keys of other kinds. Of several such keys,
    /// the one named is the first in `any_kind_keys`; a key of no kind, or a value of the wrong
    /// type for a key of this kind, is named before any of them, as serde meets it.
    pub(crate) fn read<T: Deserialize<'i>>(&self, kind: &str, head: &[&str], file: &JobFile) -> Result<T, SpecError> {
        let mut table = self.table.clone();
        remove(&mut table, head.iter().copied());
        let mut refused: Vec<String> = Vec::new();
        loop {
            let e = match T::deserialize(ValueDeserializer::from(table.clone())) {
                Ok(read) if refused.is_empty() => return Ok(read),
                Ok(_) => break,
                Err(e) => e,
            };
            match unknown_key(e.message()) {
                Some(key) if self.any_kind_keys.contains(&key) => {
                    remove(&mut table, [key]);
                    refused.push(key.to_string());
                }
                Some(key) => {
                    let refusal = toml::de::Error::unknown_field(key, self.any_kind_keys);
                    return Err(file.refused(e.span(), refusal.message()));
                }
                None => return Err(file.serde_error(&e)),
            }
        }
        let first = self.any_kind_keys.iter().find(|k| refused.iter().any(|r| r == *k)).copied().unwrap_or_default();
        Err(file.err(&format!("{}.{first}", self.name), format!("is not a key of a `{kind}` {}", self.name)))
    }
}

/// `table` without `keys`.
fn remove<'k>(table: &mut Spanned<DeValue<'_>>, keys: impl IntoIterator<Item = &'k str>) {
    if let DeValue::Table(entries) = table.get_mut() {
        for key in keys {
            entries.remove(key);
        }
    }
}

/// The key `deny_unknown_fields` refused, read from serde's fixed wording of that error
/// (`unknown field `colour`, expected one of …`).
fn unknown_key(message: &str) -> Option<&str> {
    message.strip_prefix("unknown field `")?.split_once('`').map(|(key, _)| key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refused_key_is_read_from_serdes_message() {
        let e = toml::de::Error::unknown_field("colour", &["path", "format"]);
        assert_eq!(unknown_key(e.message()), Some("colour"));
        assert_eq!(unknown_key(toml::de::Error::unknown_field("x", &[]).message()), Some("x"));
        assert_eq!(unknown_key("invalid type: string \"yes\", expected a boolean"), None);
    }
}
