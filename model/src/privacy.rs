//! The erasure of a user's personal data (GDPR article 17): how a stored
//! text loses the user's login and e-mail addresses. Both stores call
//! these on every text they rewrite, so the rule is written once.
//!
//! The login is replaced by the pseudonym wherever it occurs, in any case
//! (a login inside a longer word too: an erasure prefers a word spoilt to
//! a name left); an e-mail address by `(erased)`. In JSON only the string
//! values change, never the keys, so the text stays the same object.

/// What replaces an e-mail address.
pub const ERASED: &str = "(erased)";

/// The texts to remove and what replaces them.
#[derive(Clone, Debug)]
pub struct Scrub<'a> {
    pub login: &'a str,
    pub pseudonym: &'a str,
    pub emails: &'a [String],
}

/// `text` with `needle` (ASCII letters in any case) replaced by `with`.
fn replace_ignoring_case(text: &str, needle: &str, with: &str) -> String {
    if needle.is_empty() {
        return text.to_owned();
    }
    let (hay, pin) = (text.as_bytes(), needle.as_bytes());
    let mut out = String::with_capacity(text.len());
    let (mut i, mut copied) = (0, 0);
    while i + pin.len() <= hay.len() {
        if text.is_char_boundary(i) && text.is_char_boundary(i + pin.len()) && hay[i..i + pin.len()].eq_ignore_ascii_case(pin) {
            out.push_str(&text[copied..i]);
            out.push_str(with);
            i += pin.len();
            copied = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&text[copied..]);
    out
}

impl Scrub<'_> {
    /// Whether `text` holds anything to remove.
    pub fn finds(&self, text: &str) -> bool {
        self.text(text) != text
    }

    /// `text` without the login and the addresses.
    pub fn text(&self, text: &str) -> String {
        let mut out = text.to_owned();
        // Addresses first: one may hold the login.
        for email in self.emails.iter().filter(|e| !e.is_empty()) {
            out = replace_ignoring_case(&out, email, ERASED);
        }
        replace_ignoring_case(&out, self.login, self.pseudonym)
    }

    /// A JSON text whose string values are scrubbed (keys kept); a text
    /// that is not JSON is scrubbed as text.
    pub fn json(&self, text: &str) -> String {
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(mut value) => {
                self.value(&mut value);
                value.to_string()
            }
            Err(_) => self.text(text),
        }
    }

    fn value(&self, value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(s) => *s = self.text(s),
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| self.value(v)),
            serde_json::Value::Object(map) => map.values_mut().for_each(|v| self.value(v)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrub(emails: &[String]) -> Scrub<'_> {
        Scrub { login: "alice", pseudonym: "erased-01", emails }
    }

    #[test]
    fn login_and_addresses_go_in_any_case() {
        let emails = vec!["Alice@Uni.example".to_owned()];
        let s = scrub(&emails);
        assert_eq!(s.text("released by alice"), "released by erased-01");
        assert_eq!(s.text("user 'ALICE' disabled by admin: alice@uni.example asked"), "user 'erased-01' disabled by admin: (erased) asked");
        assert_eq!(s.text("Malice"), "Merased-01");
        assert_eq!(s.text("née alice ünïcode"), "née erased-01 ünïcode");
        assert!(!s.finds("nothing here"));
        assert!(s.finds("Alice"));
    }

    #[test]
    fn json_keeps_its_keys() {
        let s = scrub(&[]);
        assert_eq!(s.json(r#"{"alice":"alice laptop","n":[1,"x-alice"]}"#), r#"{"alice":"erased-01 laptop","n":[1,"x-erased-01"]}"#);
        assert_eq!(s.json("not json: alice"), "not json: erased-01");
    }
}
