//! Layered configuration: the type's defaults, then a TOML file, then
//! environment variables `METER__SECTION__KEY=value`. An environment value
//! takes the type of the field it sets: `METER__CLICKHOUSE__PASSWORD=123456`
//! is the string "123456", `METER__KAFKA__PARTITIONS=12` the number 12 (a
//! value is read as TOML first, and as a plain string where the field wants
//! one). Under `[kafka.client]` (librdkafka properties, whose names have
//! dots) an underscore in the variable's name stands for a dot:
//! `METER__KAFKA__CLIENT__SASL_PASSWORD` sets `sasl.password`. Unknown keys
//! and values of the wrong type are errors that name the key's path (and
//! the variable, when one set it).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};
use serde::de::DeserializeOwned;
use toml::{Table, Value};

/// Loads `T` from `path` (if any) and the environment variables that start
/// with `prefix` followed by `__`.
pub fn load_config<T: DeserializeOwned>(path: Option<&Path>, prefix: &str) -> anyhow::Result<T> {
    let table = match path {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading config {}", p.display()))?;
            text.parse::<Table>().with_context(|| format!("parsing config {}", p.display()))?
        }
        None => Table::new(),
    };
    let head = format!("{prefix}__");
    let vars: Vec<(String, String)> = std::env::vars().filter(|(k, _)| k.starts_with(&head)).collect();
    layer(table, &head, vars)
}

/// The dotted path an environment variable sets (`kafka.client` keys get
/// librdkafka's dots).
fn env_path(var: &str, head: &str) -> Vec<String> {
    let mut path: Vec<String> = var[head.len()..].split("__").map(str::to_ascii_lowercase).collect();
    if path.len() == 3 && path[0] == "kafka" && path[1] == "client" {
        path[2] = path[2].replace('_', ".");
    }
    path
}

/// Applies `vars` over `table` and deserializes, giving each variable the
/// type its field wants.
fn layer<T: DeserializeOwned>(mut table: Table, head: &str, mut vars: Vec<(String, String)>) -> anyhow::Result<T> {
    vars.sort();
    // Dotted path -> (path, variable, raw value); typed as TOML until a
    // field turns out to want a string.
    let mut from_env: BTreeMap<String, (Vec<String>, String, String)> = BTreeMap::new();
    for (var, raw) in vars {
        let path = env_path(&var, head);
        set_path(&mut table, &path, parse_value(&raw)).with_context(|| format!("environment variable {var}"))?;
        from_env.insert(path.join("."), (path, var, raw));
    }
    let mut as_text: std::collections::BTreeSet<String> = Default::default();
    loop {
        match serde_path_to_error::deserialize::<_, T>(Value::Table(table.clone())) {
            Ok(v) => return Ok(v),
            Err(e) => {
                let at = e.path().to_string();
                let retyped = from_env
                    .get(&at)
                    .filter(|(_, _, raw)| !as_text.contains(&at) && !matches!(parse_value(raw), Value::String(_)));
                match retyped {
                    // The field wants a string: give it the text as written.
                    Some((path, _, raw)) => {
                        set_path(&mut table, path, Value::String(raw.clone()))?;
                        as_text.insert(at);
                    }
                    None => {
                        let by = from_env.get(&at).map_or(String::new(), |(_, var, _)| format!(" (set by {var})"));
                        bail!("invalid configuration: {at}{by}: {}", e.inner());
                    }
                }
            }
        }
    }
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

    #[derive(Debug, Deserialize, Default, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct WithClient {
        inner: Inner,
        client: std::collections::BTreeMap<String, String>,
    }

    fn vars(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn values_take_the_type_of_their_field() {
        // A numeric password is a string; a port is a number.
        let c: Cfg =
            layer(Table::new(), "M__", vars(&[("M__INNER__NAME", "123456"), ("M__INNER__PORT", "99")])).unwrap();
        assert_eq!(c.inner, Inner { port: 99, name: "123456".into() });
        let c: Cfg = layer(Table::new(), "M__", vars(&[("M__INNER__NAME", "true"), ("M__FLAG", "true")])).unwrap();
        assert_eq!((c.inner.name.as_str(), c.flag), ("true", true));
    }

    #[test]
    fn kafka_client_keys_get_librdkafka_dots() {
        #[derive(Debug, Deserialize, Default)]
        #[serde(deny_unknown_fields, default)]
        struct K {
            kafka: WithClient,
        }
        let k: K = layer(
            Table::new(),
            "M__",
            vars(&[("M__KAFKA__CLIENT__SASL_PASSWORD", "123"), ("M__KAFKA__CLIENT__SECURITY_PROTOCOL", "SASL_SSL")]),
        )
        .unwrap();
        assert_eq!(k.kafka.client["sasl.password"], "123");
        assert_eq!(k.kafka.client["security.protocol"], "SASL_SSL");
    }

    #[test]
    fn errors_name_the_path_and_the_variable() {
        for bad in ["eighty", "true"] {
            let err = layer::<Cfg>(Table::new(), "M__", vars(&[("M__INNER__PORT", bad)])).unwrap_err();
            assert!(
                err.to_string().starts_with("invalid configuration: inner.port (set by M__INNER__PORT): invalid type"),
                "{err}"
            );
        }
        let mut file = Table::new();
        file.insert("inner".into(), Value::Table([("prot".to_owned(), Value::Integer(1))].into_iter().collect()));
        let err = layer::<Cfg>(file, "M__", vec![]).unwrap_err();
        assert!(err.to_string().contains("inner") && err.to_string().contains("unknown field `prot`"), "{err}");
    }

    #[test]
    fn strings_need_no_quotes() {
        std::env::set_var("MTEST3__INNER__NAME", "127.0.0.1:9092");
        let c: Cfg = load_config(None, "MTEST3").unwrap();
        assert_eq!(c.inner.name, "127.0.0.1:9092");
    }
}
