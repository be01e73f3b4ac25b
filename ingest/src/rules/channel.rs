//! Notification channels: their stored definitions (`create_channel(name, kind,
//! options)`, catalog kind `channel`) and the request each kind sends, as the vendors
//! define them:
//!
//! - `wecom` (WeCom group robot): POST `{"msgtype": "text"|"markdown", …}`, content at
//!   most 2,048 / 4,096 bytes (cut at a UTF-8 boundary); success is HTTP 200 with
//!   `errcode` 0.
//! - `dingtalk` (DingTalk custom robot): POST `{"msgtype": "text", …}` to the URL, signed
//!   when a `secret` is given (`timestamp` in ms and `sign` = URL-encoded base64 of
//!   HMAC-SHA256 of `timestamp\nsecret`, fresh per request); success is `errcode` 0.
//! - `webhook`: POST of the event as JSON with the configured headers and
//!   `X-Wattdb-Event-Id`; any 2xx is success.
//! - `mqtt`: the same JSON published at QoS 1 to `topic` (placeholders `{alarm}`,
//!   `{state}`, `{severity}`) on an external broker — `mqtt://` or `mqtts://` (TLS, the
//!   system roots or `ca_file`), user name and password in the URL; the broker's PUBACK
//!   is success.
//!
//! Both robots allow 20 messages a minute; a channel sends at most `rate_per_minute`
//! (default 18 for robots, unlimited for webhooks).

use std::collections::BTreeMap;

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::alarm_rule::check_name;
use super::error::RuleError;
use super::state_file::AlarmEvent;

pub const CHANNEL_KIND: &str = "channel";
pub const KINDS: &[&str] = &["wecom", "dingtalk", "webhook", "mqtt"];
const WECOM_TEXT_BYTES: usize = 2048;
const WECOM_MARKDOWN_BYTES: usize = 4096;
const ROBOT_RATE: u32 = 18;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelDef {
    pub name: String,
    /// `wecom`, `dingtalk` or `webhook`.
    pub kind: String,
    pub url: String,
    /// WeCom: send markdown instead of text.
    #[serde(default)]
    pub markdown: bool,
    /// DingTalk: the signing secret.
    #[serde(default)]
    pub secret: Option<String>,
    /// Webhook: extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// MQTT: the topic template.
    #[serde(default)]
    pub topic: Option<String>,
    /// MQTT over TLS: PEM CA certificate(s) to trust instead of the system roots.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// At most this many requests a minute (0 = no limit).
    pub rate_per_minute: u32,
}

/// One request to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

fn bad(name: &str, m: impl std::fmt::Display) -> RuleError {
    RuleError::InvalidOption(format!("channel \"{name}\": {m}"))
}

impl ChannelDef {
    pub fn parse(name: &str, kind: &str, options: &str) -> Result<ChannelDef, RuleError> {
        check_name(name)?;
        if !KINDS.contains(&kind) {
            return Err(bad(
                name,
                format!("unknown kind \"{kind}\" (wecom, dingtalk, webhook, mqtt)"),
            ));
        }
        let opts: BTreeMap<String, serde_json::Value> = serde_json::from_str(options)
            .map_err(|e| bad(name, format!("options are not a JSON object: {e}")))?;
        let allowed: &[&str] = match kind {
            "wecom" => &["url", "format", "rate_per_minute"],
            "dingtalk" => &["url", "secret", "rate_per_minute"],
            "mqtt" => &["url", "topic", "ca_file", "rate_per_minute"],
            _ => &["url", "headers", "rate_per_minute"],
        };
        if let Some(k) = opts.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(bad(
                name,
                format!("unknown option \"{k}\" for {kind} ({})", allowed.join(", ")),
            ));
        }
        let text = |k: &str| -> Result<Option<String>, RuleError> {
            match opts.get(k) {
                None => Ok(None),
                Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
                Some(v) => Err(bad(name, format!("\"{k}\" must be a string, not {v}"))),
            }
        };
        let url = text("url")?.ok_or_else(|| bad(name, "\"url\" is required"))?;
        let parsed = url::Url::parse(&url).map_err(|e| bad(name, format!("url: {e}")))?;
        let ca_file = text("ca_file")?;
        if kind == "mqtt" {
            if !matches!(parsed.scheme(), "mqtt" | "mqtts") || parsed.host_str().is_none() {
                return Err(bad(
                    name,
                    "url must be mqtt://[user:password@]host[:port] or mqtts://…",
                ));
            }
            // Checks the credentials' form and reads the CA file now, not at the first alarm.
            crate::broker_client::connection_options(
                &url,
                "wattdb-check".into(),
                None,
                None,
                ca_file.as_deref().map(std::path::Path::new),
            )
            .map_err(|e| bad(name, e))?;
        } else if !matches!(parsed.scheme(), "http" | "https") {
            return Err(bad(name, "url must be http:// or https://"));
        }
        let topic = text("topic")?;
        if kind == "mqtt" {
            match &topic {
                None => return Err(bad(name, "\"topic\" is required")),
                Some(t) if t.is_empty() || t.contains(['+', '#']) => {
                    return Err(bad(name, format!("topic \"{t}\" is not a topic name")));
                }
                Some(_) => {}
            }
        }
        let markdown = match text("format")?.as_deref() {
            None | Some("text") => false,
            Some("markdown") => true,
            Some(f) => return Err(bad(name, format!("format \"{f}\" is not text or markdown"))),
        };
        let mut headers = BTreeMap::new();
        match opts.get("headers") {
            None => {}
            Some(serde_json::Value::Object(h)) => {
                for (k, v) in h {
                    let v = v
                        .as_str()
                        .ok_or_else(|| bad(name, format!("header \"{k}\" must be a string")))?;
                    headers.insert(k.clone(), v.to_string());
                }
            }
            Some(_) => return Err(bad(name, "\"headers\" must be an object")),
        }
        let rate_per_minute = match opts.get("rate_per_minute") {
            None => {
                if matches!(kind, "webhook" | "mqtt") {
                    0
                } else {
                    ROBOT_RATE
                }
            }
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| bad(name, "\"rate_per_minute\" must be a whole number"))?,
        };
        Ok(ChannelDef {
            name: name.to_string(),
            kind: kind.to_string(),
            url,
            markdown,
            secret: text("secret")?,
            headers,
            topic,
            ca_file,
            rate_per_minute,
        })
    }

    /// The URL without its query (robot keys and tokens live there) and password, for
    /// views and logs.
    pub fn redacted_url(&self) -> String {
        match url::Url::parse(&self.url) {
            Ok(mut u) => {
                if u.query().is_some() {
                    u.set_query(Some("…"));
                }
                if u.password().is_some() {
                    let _ = u.set_password(Some("***"));
                }
                u.to_string()
            }
            Err(_) => "…".into(),
        }
    }

    /// The request announcing `events` (one event, or a digest of several); `now_ms` is
    /// the signing time.
    pub fn request(&self, events: &[&AlarmEvent], now_ms: i64) -> Request {
        let text = text_of(events);
        match self.kind.as_str() {
            "wecom" => {
                let (msgtype, limit) = if self.markdown {
                    ("markdown", WECOM_MARKDOWN_BYTES)
                } else {
                    ("text", WECOM_TEXT_BYTES)
                };
                let body = serde_json::json!({
                    "msgtype": msgtype,
                    msgtype: { "content": truncate_utf8(&text, limit) },
                });
                Request {
                    url: self.url.clone(),
                    headers: vec![("Content-Type".into(), "application/json".into())],
                    body: body.to_string(),
                }
            }
            "dingtalk" => {
                let url = match &self.secret {
                    Some(secret) => {
                        let sign = dingtalk_sign(secret, now_ms);
                        let sep = if self.url.contains('?') { '&' } else { '?' };
                        format!("{}{sep}timestamp={now_ms}&sign={sign}", self.url)
                    }
                    None => self.url.clone(),
                };
                let body = serde_json::json!({
                    "msgtype": "text",
                    "text": { "content": truncate_utf8(&text, WECOM_TEXT_BYTES * 2) },
                });
                Request {
                    url,
                    headers: vec![("Content-Type".into(), "application/json".into())],
                    body: body.to_string(),
                }
            }
            _ => {
                let json = |e: &AlarmEvent| {
                    serde_json::json!({
                        "alarm": e.alarm,
                        "series": e.series,
                        "state": e.state,
                        "severity": e.severity,
                        "ts": chrono::DateTime::from_timestamp_micros(e.ts)
                            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
                        "value": e.value,
                        "message": e.message,
                        "event_id": e.event_id,
                    })
                };
                let body = match events {
                    [one] => json(one),
                    many => serde_json::json!({
                        "digest": true,
                        "events": many.iter().map(|e| json(e)).collect::<Vec<_>>(),
                    }),
                };
                if self.kind == "mqtt" {
                    // For an MQTT publish the URL field carries the topic.
                    let first = events.first();
                    let topic = self
                        .topic
                        .clone()
                        .unwrap_or_default()
                        .replace("{alarm}", first.map_or("", |e| e.alarm.as_str()))
                        .replace("{state}", first.map_or("", |e| e.state.as_str()))
                        .replace("{severity}", first.map_or("", |e| e.severity.as_str()));
                    return Request {
                        url: topic,
                        headers: Vec::new(),
                        body: body.to_string(),
                    };
                }
                let mut headers =
                    vec![("Content-Type".to_string(), "application/json".to_string())];
                headers.push((
                    "X-Wattdb-Event-Id".into(),
                    events
                        .iter()
                        .map(|e| e.event_id.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                ));
                headers.extend(self.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
                Request {
                    url: self.url.clone(),
                    headers,
                    body: body.to_string(),
                }
            }
        }
    }

    /// Did the receiver accept the request? (`status`, response body)
    pub fn accepted(&self, status: u16, body: &str) -> Result<(), String> {
        match self.kind.as_str() {
            "wecom" | "dingtalk" => {
                if status != 200 {
                    return Err(format!("HTTP {status}"));
                }
                let v: serde_json::Value = serde_json::from_str(body).map_err(|_| {
                    format!(
                        "HTTP 200 without a JSON errcode: {}",
                        truncate_utf8(body, 200)
                    )
                })?;
                match v.get("errcode").and_then(|c| c.as_i64()) {
                    Some(0) => Ok(()),
                    Some(code) => Err(format!(
                        "errcode {code}: {}",
                        v.get("errmsg").and_then(|m| m.as_str()).unwrap_or("")
                    )),
                    None => Err("HTTP 200 without an errcode".into()),
                }
            }
            _ if (200..300).contains(&status) => Ok(()),
            _ => Err(format!("HTTP {status}")),
        }
    }
}

/// The text of a notification: the event's message with its id, or a digest.
fn text_of(events: &[&AlarmEvent]) -> String {
    match events {
        [one] => format!("{}\n(event {})", one.message, one.event_id),
        many => {
            let mut out = format!("{} alarms:", many.len());
            for e in many.iter().take(20) {
                out.push_str(&format!("\n- {} (event {})", e.message, e.event_id));
            }
            if many.len() > 20 {
                out.push_str(&format!("\n… and {} more", many.len() - 20));
            }
            out
        }
    }
}

/// At most `limit` bytes of `s`, cut at a character boundary.
pub fn truncate_utf8(s: &str, limit: usize) -> &str {
    if s.len() <= limit {
        return s;
    }
    let mut end = limit;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// DingTalk's signature: URL-encoded base64 of HMAC-SHA256(secret, "timestamp\nsecret").
pub fn dingtalk_sign(secret: &str, timestamp_ms: i64) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(&key, format!("{timestamp_ms}\n{secret}").as_bytes());
    let b64 = base64::engine::general_purpose::STANDARD.encode(tag.as_ref());
    url::form_urlencoded::byte_serialize(b64.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(msg: &str) -> AlarmEvent {
        AlarmEvent {
            alarm: "a".into(),
            tags: vec!["m1".into()],
            series: "pid=m1".into(),
            ts: 1_000_000,
            state: "firing".into(),
            severity: "major".into(),
            value: Some(240.5),
            message: msg.into(),
            event_id: "0123456789abcdef".into(),
            channels: vec![],
        }
    }

    #[test]
    fn mqtt_channels_take_mqtts_and_credentials_and_hide_the_password() {
        let c = ChannelDef::parse(
            "bus",
            "mqtt",
            r#"{"url": "mqtts://alarm:s3cret@broker:8883", "topic": "alarms/{alarm}"}"#,
        )
        .unwrap();
        assert_eq!(c.redacted_url(), "mqtts://alarm:***@broker:8883");
        let refused = |opts: &str| {
            ChannelDef::parse("bus", "mqtt", opts)
                .unwrap_err()
                .to_string()
        };
        let e = refused(r#"{"url": "http://broker", "topic": "t"}"#);
        assert!(e.contains("mqtts://"), "{e}");
        let e = refused(r#"{"url": "mqtt://:pw@broker", "topic": "t"}"#);
        assert!(e.contains("user name"), "{e}");
        let e =
            refused(r#"{"url": "mqtts://broker", "topic": "t", "ca_file": "/nonexistent/ca.pem"}"#);
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    }

    #[test]
    fn wecom_text_is_cut_at_a_character_boundary() {
        let c = ChannelDef::parse("ops", "wecom", r#"{"url": "http://x/send?key=k"}"#).unwrap();
        assert_eq!(c.rate_per_minute, 18);
        assert_eq!(c.redacted_url(), "http://x/send?%E2%80%A6");
        let long = "电压越限".repeat(400); // 4,800 bytes
        let e = event(&long);
        let r = c.request(&[&e], 0);
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        let content = v["text"]["content"].as_str().unwrap();
        assert!(
            content.len() <= 2048 && content.len() > 2040,
            "{}",
            content.len()
        );
        assert!(c.accepted(200, r#"{"errcode": 0, "errmsg": "ok"}"#).is_ok());
        assert!(
            c.accepted(200, r#"{"errcode": 45009, "errmsg": "freq"}"#)
                .is_err()
        );
        assert!(c.accepted(500, "").is_err());
    }

    #[test]
    fn options_are_checked() {
        for (kind, opts) in [
            ("wecom", r#"{}"#),
            ("wecom", r#"{"url": "ftp://x"}"#),
            ("wecom", r#"{"url": "http://x", "format": "html"}"#),
            ("webhook", r#"{"url": "http://x", "secret": "s"}"#),
            ("pager", r#"{"url": "http://x"}"#),
        ] {
            assert!(
                matches!(
                    ChannelDef::parse("c", kind, opts),
                    Err(RuleError::InvalidOption(_))
                ),
                "{kind} {opts}"
            );
        }
    }
}
