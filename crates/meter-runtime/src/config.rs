//! Layered configuration: the type's defaults, then a TOML file, then
//! environment variables `METER__SECTION__KEY=value` (values parsed as TOML
//! when they parse, as strings otherwise). Unknown keys are errors.

use std::path::Path;

use anyhow::{bail, Context};
use serde::de::DeserializeOwned;
use toml::{Table, Value};

/// Loads `T` from `path` (if any) and the environment variables that start
/// with `prefix` followed by `__`.
pub fn load_config<T: DeserializeOwned>(path: Option<&Path>, prefix: &str) -> anyhow::Result<T> {
    let mut table = match path {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading config {}", p.display()))?;
            text.parse::<Table>().with_context(|| format!("parsing config {}", p.display()))?
        }
        None => Table::new(),
    };
    let head = format!("{prefix}__");
    let mut vars: Vec<(String, String)> = std::env::vars().filter(|(k, _)| k.starts_with(&head)).collect();
    vars.sort();
    for (key, raw) in vars {
        let path: Vec<String> = key[head.len()..].split("__").map(str::to_ascii_lowercase).collect();
        set_path(&mut table, &path, parse_value(&raw)).with_context(|| format!("environment variable {key}"))?;
    }
    Value::Table(table).try_into().context("invalid configuration")
}

fn parse_value(raw: &str) -> Value {
    format!("v = {raw}")
        .parse::<Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(raw.to_owned()))
}

fn set_path(table: &mut Table, path: &[String], value: Value) -> anyhow::Result<()> {
    match path {
        [] => bail!("empty key"),
        [last] => {
            table.insert(last.clone(), value);
            Ok(())
        }
        [first, rest @ ..] => {
            let entry = table.entry(first.clone()).or_insert_with(|| Value::Table(Table::new()));
            match entry {
                Value::Table(t) => set_path(t, rest, value),
                _ => bail!("{first} is not a section"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, Default, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Inner {
        port: u16,
        name: String,
    }

    #[derive(Debug, Deserialize, Default, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Cfg {
        inner: Inner,
        flag: bool,
    }

    #[test]
    fn env_overrides_file_and_types_are_parsed() {
        let dir = std::env::temp_dir().join(format!("meter-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, "flag = true\n[inner]\nport = 1\nname = \"a\"\n").unwrap();
        std::env::set_var("MTEST1__INNER__PORT", "8080");
        let c: Cfg = load_config(Some(&file), "MTEST1").unwrap();
        assert_eq!(c, Cfg { inner: Inner { port: 8080, name: "a".into() }, flag: true });
    }

    #[test]
    fn unknown_keys_are_errors() {
        std::env::set_var("MTEST2__INNER__PROT", "1");
        let err = load_config::<Cfg>(None, "MTEST2").unwrap_err();
        assert!(format!("{err:#}").contains("prot"), "{err:#}");
    }

    #[test]
    fn strings_need_no_quotes() {
        std::env::set_var("MTEST3__INNER__NAME", "127.0.0.1:9092");
        let c: Cfg = load_config(None, "MTEST3").unwrap();
        assert_eq!(c.inner.name, "127.0.0.1:9092");
    }
}
