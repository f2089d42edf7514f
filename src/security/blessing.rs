//! Blessings: chains of certificates that give a public key a name.
//!
//! The first certificate of a chain is self-signed by the root key and
//! names it (`alice`); each next one is signed by the key of the one before
//! and extends the name (`alice/phone`) for a new key, optionally with
//! caveats that limit where the blessing holds. Each certificate's
//! signature covers the previous signature too, so no certificate can be
//! moved, dropped or altered without breaking the chain.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ed25519_dalek::{Signature, VerifyingKey};

use crate::error::{Error, Result};

/// Most certificates in a chain.
pub const MAX_CHAIN: usize = 32;
/// Most caveats in a certificate, and entries in a caveat's list.
pub const MAX_CAVEATS: usize = 64;
/// Longest extension (name component), in bytes.
pub const MAX_EXTENSION: usize = 256;

const SIGNING_CONTEXT: &[u8] = b"wspr certificate v1";

/// A pattern over blessing names:
///
/// | pattern | matches |
/// |---|---|
/// | `...` | every name |
/// | `alice/...` | `alice` and every name under it (`alice/phone`, `alice/phone/app`) |
/// | `alice/$` | exactly `alice` |
/// | `alice` | exactly `alice` |
///
/// `$` is Vanadium's "exactly this name" marker. Unlike Vanadium, a pattern
/// without a marker matches exactly too: patterns are signed into caveats
/// and written into ACLs, and widening what an existing one admits would
/// loosen decisions made before. `$` and `...` are never name components,
/// so no blessing can be named to look like a marker.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BlessingPattern {
    text: String,
    kind: PatternKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum PatternKind {
    All,
    /// The body and every name under it.
    Prefix,
    /// The body only.
    Exact,
}

impl BlessingPattern {
    /// Parses a pattern.
    pub fn new(p: &str) -> Result<BlessingPattern> {
        let (body, kind) = if p == "..." {
            ("", PatternKind::All)
        } else if let Some(b) = p.strip_suffix("/...") {
            (b, PatternKind::Prefix)
        } else if let Some(b) = p.strip_suffix("/$") {
            (b, PatternKind::Exact)
        } else {
            (p, PatternKind::Exact)
        };
        if kind != PatternKind::All {
            for part in body.split('/') {
                check_extension(part)
                    .map_err(|e| Error::bad_arg(format!("pattern {p:?}: {}", e.msg())))?;
            }
        }
        Ok(BlessingPattern {
            text: p.to_string(),
            kind,
        })
    }

    /// The pattern `<name>/...`: `name` and every name under it.
    pub fn and_below(name: &str) -> Result<BlessingPattern> {
        BlessingPattern::new(&format!("{name}/..."))
    }

    /// The name a pattern is about (`alice` of `alice/...`, `alice/$` and
    /// `alice`; empty for `...`).
    fn body(&self) -> &str {
        match self.kind {
            PatternKind::All => "",
            PatternKind::Prefix => &self.text[..self.text.len() - 4],
            PatternKind::Exact => self.text.strip_suffix("/$").unwrap_or(&self.text),
        }
    }

    /// Whether the blessing name `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        let body = self.body();
        match self.kind {
            PatternKind::All => true,
            PatternKind::Exact => name == body,
            PatternKind::Prefix => {
                name == body
                    || (name.starts_with(body) && name.as_bytes().get(body.len()) == Some(&b'/'))
            }
        }
    }

    /// The pattern's text.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl std::fmt::Display for BlessingPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// A condition a blessing holds under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caveat {
    /// Valid until this many milliseconds after the Unix epoch.
    Expiry(u64),
    /// Only for calls of these methods (UpperCamelCase or lowerCamelCase).
    Method(Vec<String>),
    /// Only when presented to a peer whose blessings match one of these.
    PeerBlessings(Vec<BlessingPattern>),
}

/// What a caveat is checked against: the call the blessing is presented
/// for.
#[derive(Clone, Debug)]
pub struct CaveatContext<'a> {
    /// The method called.
    pub method: &'a str,
    /// The blessing names of the peer it is presented to.
    pub peer_names: &'a [String],
    /// The time of the call.
    pub now: SystemTime,
}

impl Caveat {
    /// An expiry `d` from now.
    /// (A `d` past what the clock can count means never.)
    pub fn expiry_in(d: Duration) -> Caveat {
        let at = SystemTime::now()
            .checked_add(d)
            .and_then(|at| at.duration_since(UNIX_EPOCH).ok())
            .map_or(u64::MAX, |t| {
                u64::try_from(t.as_millis()).unwrap_or(u64::MAX)
            });
        Caveat::Expiry(at)
    }

    /// Whether the caveat holds in `ctx`.
    pub fn holds(&self, ctx: &CaveatContext<'_>) -> bool {
        match self {
            Caveat::Expiry(ms) => {
                let now = ctx
                    .now
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(u64::MAX);
                now < *ms
            }
            Caveat::Method(methods) => {
                let m = crate::naming::upper_first(ctx.method);
                methods.iter().any(|x| crate::naming::upper_first(x) == m)
            }
            Caveat::PeerBlessings(patterns) => ctx
                .peer_names
                .iter()
                .any(|n| patterns.iter().any(|p| p.matches(n))),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Caveat::Expiry(ms) => {
                out.push(1);
                out.extend_from_slice(&ms.to_be_bytes());
            }
            Caveat::Method(list) => {
                out.push(2);
                put_list(out, list.iter().map(String::as_str));
            }
            Caveat::PeerBlessings(list) => {
                out.push(3);
                put_list(out, list.iter().map(BlessingPattern::as_str));
            }
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Caveat> {
        Ok(match r.u8()? {
            1 => Caveat::Expiry(r.u64()?),
            2 => Caveat::Method(r.list()?),
            3 => Caveat::PeerBlessings(
                r.list()?
                    .iter()
                    .map(|p| BlessingPattern::new(p))
                    .collect::<Result<_>>()?,
            ),
            k => return Err(bad(&format!("unknown caveat kind {k}"))),
        })
    }
}

fn put_list<'a>(out: &mut Vec<u8>, items: impl ExactSizeIterator<Item = &'a str>) {
    out.push(items.len().min(255) as u8);
    for s in items.take(255) {
        put_str(out, s);
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let b = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

fn bad(why: &str) -> Error {
    Error::bad_arg(format!("malformed blessing: {why}"))
}

/// Checks caveats against what a blessing's reader accepts (a blessing
/// made with more could be signed but never read back).
pub fn check_caveats(caveats: &[Caveat]) -> Result<()> {
    let too_long = |why: String| Err(Error::bad_arg(why));
    if caveats.len() > MAX_CAVEATS {
        return too_long(format!("{} caveats, limit {MAX_CAVEATS}", caveats.len()));
    }
    for c in caveats {
        let items: Vec<&str> = match c {
            Caveat::Expiry(_) => continue,
            Caveat::Method(l) => l.iter().map(String::as_str).collect(),
            Caveat::PeerBlessings(l) => l.iter().map(BlessingPattern::as_str).collect(),
        };
        if items.len() > MAX_CAVEATS {
            return too_long(format!(
                "a caveat of {} entries, limit {MAX_CAVEATS}",
                items.len()
            ));
        }
        if let Some(s) = items.iter().find(|s| s.len() > u16::MAX as usize) {
            return too_long(format!(
                "a caveat entry of {} bytes, limit {}",
                s.len(),
                u16::MAX
            ));
        }
    }
    Ok(())
}

/// Checks one name component: 1 to 256 bytes, not `...` or `$` (the
/// pattern markers), no `/`, and no character a reader could not see for
/// what it is: control, format (zero-width, direction changes), unassigned,
/// private-use, surrogate, or separator (spaces) characters.
pub fn check_extension(e: &str) -> Result<()> {
    if e.is_empty() || e.len() > MAX_EXTENSION {
        return Err(Error::bad_arg(format!(
            "a blessing name component must be 1 to {MAX_EXTENSION} bytes"
        )));
    }
    if e == "..." || e == "$" || e.contains('/') {
        return Err(Error::bad_arg(format!(
            "{e:?} is not a valid blessing name component (\"...\", \"$\" and \"/\" are pattern syntax)"
        )));
    }
    if let Some((c, what)) = first_unseen(e) {
        return Err(Error::bad_arg(format!(
            "{e:?} is not a valid blessing name component: it holds U+{:04X}, {what}",
            c as u32
        )));
    }
    Ok(())
}

/// The first character of `s` a reader could not see for what it is (see
/// [`check_extension`]), and what it is.
pub(crate) fn first_unseen(s: &str) -> Option<(char, &'static str)> {
    s.chars().find_map(|c| unseen(c).map(|w| (c, w)))
}

/// Why `c` may not be in a name, if it may not.
fn unseen(c: char) -> Option<&'static str> {
    use unicode_properties::{GeneralCategory as G, UnicodeGeneralCategory};
    if c.is_whitespace() {
        return Some("a space");
    }
    match c.general_category() {
        G::Control => Some("a control character"),
        G::Format => Some("a format character (invisible, or changes the text's direction)"),
        G::Unassigned => Some("an unassigned code point"),
        G::PrivateUse => Some("a private-use character"),
        G::Surrogate => Some("a surrogate"),
        G::SpaceSeparator | G::LineSeparator | G::ParagraphSeparator => Some("a separator"),
        _ => None,
    }
}

/// One link of a chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Certificate {
    /// The name component this certificate adds.
    pub extension: String,
    /// The key being blessed.
    pub public_key: [u8; 32],
    /// Conditions on the blessing.
    pub caveats: Vec<Caveat>,
    /// By the previous certificate's key (the root: its own key).
    pub signature: [u8; 64],
}

impl Certificate {
    fn body(&self, out: &mut Vec<u8>) {
        put_str(out, &self.extension);
        out.extend_from_slice(&self.public_key);
        out.push(self.caveats.len().min(255) as u8);
        for c in &self.caveats {
            c.encode(out);
        }
    }

    /// What the signer signs: the previous signature (none for a root) and
    /// this certificate's body.
    pub(crate) fn signing_input(&self, previous: Option<&[u8; 64]>) -> Vec<u8> {
        let mut m = SIGNING_CONTEXT.to_vec();
        match previous {
            Some(s) => {
                m.push(1);
                m.extend_from_slice(s);
            }
            None => m.push(0),
        }
        self.body(&mut m);
        m
    }
}

/// A certificate chain: a name for a public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blessing {
    chain: Vec<Certificate>,
}

impl Blessing {
    pub(crate) fn from_chain(chain: Vec<Certificate>) -> Blessing {
        Blessing { chain }
    }

    /// The certificates, root first.
    pub fn chain(&self) -> &[Certificate] {
        &self.chain
    }

    /// The blessing's name (`alice/phone`).
    pub fn name(&self) -> String {
        // (One allocation: a server works out its caller's names per call.)
        let len = self.chain.iter().map(|c| c.extension.len() + 1).sum();
        let mut out = String::with_capacity(len);
        for (i, c) in self.chain.iter().enumerate() {
            if i > 0 {
                out.push('/');
            }
            out.push_str(&c.extension);
        }
        out
    }

    /// The key the blessing names.
    pub fn public_key(&self) -> [u8; 32] {
        self.chain.last().map(|c| c.public_key).unwrap_or([0; 32])
    }

    /// The root key the chain starts from.
    pub fn root_key(&self) -> [u8; 32] {
        self.chain.first().map(|c| c.public_key).unwrap_or([0; 32])
    }

    /// Checks every signature of the chain.
    pub fn verify(&self) -> Result<()> {
        if self.chain.is_empty() || self.chain.len() > MAX_CHAIN {
            return Err(bad("a chain has 1 to 32 certificates"));
        }
        let mut signer = self.chain[0].public_key;
        let mut previous: Option<&[u8; 64]> = None;
        for (i, cert) in self.chain.iter().enumerate() {
            check_extension(&cert.extension)?;
            let key = VerifyingKey::from_bytes(&signer)
                .map_err(|_| bad(&format!("certificate {i} has an invalid signer key")))?;
            key.verify_strict(
                &cert.signing_input(previous),
                &Signature::from_bytes(&cert.signature),
            )
            .map_err(|_| {
                Error::no_access(format!(
                    "blessing {}: certificate {i} has a bad signature",
                    self.name()
                ))
            })?;
            signer = cert.public_key;
            previous = Some(&cert.signature);
        }
        Ok(())
    }

    /// When the blessing stops holding: its earliest expiry caveat (none:
    /// never).
    pub fn expiry(&self) -> Option<SystemTime> {
        self.chain
            .iter()
            .flat_map(|c| &c.caveats)
            .filter_map(|c| match c {
                Caveat::Expiry(ms) => Some(*ms),
                _ => None,
            })
            .min()
            // (Past what the clock can count: never.)
            .and_then(|ms| UNIX_EPOCH.checked_add(Duration::from_millis(ms)))
    }

    /// Whether every caveat of the chain holds in `ctx`.
    pub fn holds(&self, ctx: &CaveatContext<'_>) -> bool {
        self.chain
            .iter()
            .all(|c| c.caveats.iter().all(|cv| cv.holds(ctx)))
    }

    /// The binary form (used on the wire and on disk).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.chain.len().min(255) as u8);
        for c in &self.chain {
            c.body(out);
            out.extend_from_slice(&c.signature);
        }
    }

    /// Reads the binary form (signatures are not checked here; see
    /// [`Blessing::verify`]).
    pub fn decode(buf: &[u8]) -> Result<(Blessing, usize)> {
        let mut r = Reader { buf, at: 0 };
        let n = r.u8()? as usize;
        if n == 0 || n > MAX_CHAIN {
            return Err(bad("a chain has 1 to 32 certificates"));
        }
        let mut chain = Vec::with_capacity(n);
        for _ in 0..n {
            let extension = r.str()?;
            let public_key = r.array::<32>()?;
            let k = r.u8()? as usize;
            if k > MAX_CAVEATS {
                return Err(bad("too many caveats"));
            }
            let caveats = (0..k)
                .map(|_| Caveat::decode(&mut r))
                .collect::<Result<_>>()?;
            let signature = r.array::<64>()?;
            chain.push(Certificate {
                extension,
                public_key,
                caveats,
                signature,
            });
        }
        Ok((Blessing { chain }, r.at))
    }

    /// Hex of the binary form.
    pub fn to_hex(&self) -> String {
        let mut b = Vec::new();
        self.encode(&mut b);
        hex(&b)
    }

    /// Reads [`Blessing::to_hex`]'s form.
    pub fn from_hex(s: &str) -> Result<Blessing> {
        let b = unhex(s).ok_or_else(|| bad("not hex"))?;
        let (bl, used) = Blessing::decode(&b)?;
        if used != b.len() {
            return Err(bad("trailing bytes"));
        }
        Ok(bl)
    }
}

/// Lower-case hex.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Reads lower- or upper-case hex.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.buf.len());
        let end = end.ok_or_else(|| bad("truncated"))?;
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array::<8>()?))
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn str(&mut self) -> Result<String> {
        let n = u16::from_be_bytes(self.array::<2>()?) as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| bad("not UTF-8"))
    }
    fn list(&mut self) -> Result<Vec<String>> {
        let n = self.u8()? as usize;
        if n > MAX_CAVEATS {
            return Err(bad("caveat list too long"));
        }
        (0..n).map(|_| self.str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let p = BlessingPattern::new("alice/...").unwrap();
        assert!(p.matches("alice"));
        assert!(p.matches("alice/phone"));
        assert!(!p.matches("alicex"));
        assert!(!p.matches("bob"));
        let exact = BlessingPattern::new("alice/phone").unwrap();
        assert!(exact.matches("alice/phone"));
        assert!(!exact.matches("alice/phone/app"));
        assert!(!exact.matches("alice"));
        assert!(BlessingPattern::new("...").unwrap().matches("anyone"));
        assert!(BlessingPattern::new("a//b").is_err());
    }

    /// `$` is "exactly this name" (Vanadium's marker), not a component
    /// someone could mint: `alice/$` admits alice and nothing else.
    #[test]
    fn dollar_means_exactly_this_name() {
        let p = BlessingPattern::new("alice/$").unwrap();
        assert!(p.matches("alice"));
        assert!(!p.matches("alice/$"));
        assert!(!p.matches("alice/phone"));
        assert_eq!(p.as_str(), "alice/$");
        let p = BlessingPattern::new("alice/phone/$").unwrap();
        assert!(p.matches("alice/phone"));
        assert!(!p.matches("alice"));
        // Today's meanings hold.
        assert!(
            BlessingPattern::new("alice/...")
                .unwrap()
                .matches("alice/x/y")
        );
        assert!(!BlessingPattern::new("alice").unwrap().matches("alice/x"));
        for bad in [
            "$",
            "alice/$/x",
            "alice/$/...",
            "/$",
            "alice/.../$",
            "alice/$$/",
        ] {
            assert!(BlessingPattern::new(bad).is_err(), "{bad}");
        }
        // And no blessing can be named "$" (or "...").
        assert!(check_extension("$").is_err());
        assert!(check_extension("...").is_err());
        assert!(check_extension("$x").is_ok());
    }

    #[test]
    fn invisible_and_direction_changing_characters_are_refused() {
        for bad in [
            "ali\u{200b}ce",      // zero-width space
            "alice\u{202e}nimda", // right-to-left override
            "\u{2066}alice",      // left-to-right isolate
            "al\u{00ad}ice",      // soft hyphen
            "alice\u{feff}",      // zero-width no-break space
            "a\u{0007}",          // bell
            "a\u{e000}",          // private use
            "a\u{0378}",          // unassigned
            "a\u{3000}b",         // ideographic space
            "a\u{2028}b",         // line separator
        ] {
            let e = check_extension(bad).unwrap_err();
            assert_eq!(e.id(), crate::error::ids::BAD_ARG);
            assert!(e.msg().contains("U+"), "{e}");
            assert!(BlessingPattern::new(&format!("{bad}/...")).is_err());
        }
        for good in [
            "alice",
            "Élodie",
            "http:localhost:3000",
            "日本",
            "o'neil",
            "a-b_c.d@e",
        ] {
            check_extension(good).unwrap();
        }
    }

    #[test]
    fn hex_round_trip() {
        assert_eq!(
            unhex(&hex(&[0, 1, 254, 255])).unwrap(),
            vec![0, 1, 254, 255]
        );
        assert!(unhex("abc").is_none());
        assert!(unhex("zz").is_none());
    }
}
