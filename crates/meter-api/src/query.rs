//! The query-string extractor of every handler: like axum's `Query`, but
//! a parameter given more than once is never silently dropped. The list
//! parameters (`project_ids`, `metrics`) take both forms Neon documents,
//! `a,b` and `x=a&x=b` (and mixes), with the same answer; any other
//! parameter given twice is refused with a 400 naming it.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Parameters that hold a comma-separated list.
const LISTS: [&str; 2] = ["project_ids", "metrics"];

/// The query parameters of a request, deserialized into `T`.
#[derive(Debug)]
pub(crate) struct Query<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let merged = merge(parts.uri.query().unwrap_or_default())?;
        serde_urlencoded::from_str(&merged)
            .map(Query)
            .map_err(|e| ApiError::invalid_query(format!("failed to deserialize query string: {e}")))
    }
}

/// The query string with each list parameter's values joined by commas,
/// re-encoded; an error naming the first other parameter given twice.
fn merge(raw: &str) -> Result<String, ApiError> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (key, value) in form_urlencoded::parse(raw.as_bytes()) {
        match pairs.iter_mut().find(|(k, _)| *k == key) {
            None => pairs.push((key.into_owned(), value.into_owned())),
            Some((k, joined)) if LISTS.contains(&k.as_str()) => {
                joined.push(',');
                joined.push_str(&value);
            }
            Some((k, _)) => {
                let lists = LISTS.join(" and ");
                return Err(ApiError::repeated_param(
                    k,
                    format!("given more than once; give it once (only {lists} take several values)"),
                ));
            }
        }
    }
    Ok(form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_repeated_or_comma_separated_mean_the_same() {
        assert_eq!(merge("project_ids=a&project_ids=b&limit=5").unwrap(), "project_ids=a%2Cb&limit=5");
        assert_eq!(merge("project_ids=a,b&limit=5").unwrap(), "project_ids=a%2Cb&limit=5");
        assert_eq!(merge("metrics=x&from=t&metrics=y%2Cz").unwrap(), "metrics=x%2Cy%2Cz&from=t");
        assert_eq!(merge("").unwrap(), "");
    }

    #[test]
    fn any_other_parameter_given_twice_is_named() {
        let e = merge("from=1&to=2&from=3").unwrap_err();
        assert!(format!("{e:?}").contains("message: \"from: given more than once"), "{e:?}");
    }
}
