//! URL-encoded form bodies and query strings, read leniently: garbage
//! becomes missing fields, never an error page of the framework.

use axum::body::Bytes;

pub struct Form(Vec<(String, String)>);

impl Form {
    pub fn parse(body: &[u8]) -> Form {
        Form(
            form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .take(1000)
                .collect(),
        )
    }

    pub fn from_body(body: &Bytes) -> Form {
        Self::parse(body)
    }

    pub fn from_query(query: Option<&str>) -> Form {
        Self::parse(query.unwrap_or("").as_bytes())
    }

    /// The first value of `key`, trimmed; None when absent or empty.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// The value exactly as sent (passwords keep their spaces).
    pub fn raw(&self, key: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    /// Every value of a repeated key (checkboxes).
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_and_garbage_fields() {
        let f = Form::parse(b"uid=a&uid=b%20c&x&=y&pw=+p+&%ff%fe=1&csrf=");
        assert_eq!(f.all("uid"), vec!["a", "b c"]);
        assert_eq!(f.get("x"), None);
        assert_eq!(f.get("csrf"), None);
        assert_eq!(f.raw("pw"), " p ");
        assert_eq!(f.get("pw"), Some("p"));
    }
}
