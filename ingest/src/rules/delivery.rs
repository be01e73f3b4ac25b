//! Delivering the outbox: a task that sends due notifications, channel by channel and
//! channels independently (a channel that hangs never holds up another: each has at
//! most one batch of sends in flight, and the others go on), with a 10 s timeout per
//! request. A channel that accepts marks its entries sent; on the first request that
//! fails or times out it stops for this batch: that entry backs off exponentially
//! (retried for at least 24 h) and the rest of the batch waits as long, unattempted. A channel over its rate (`rate_per_minute`, 18 for the
//! robots) waits; when more is due than it may send in the current minute, one digest of
//! all of them is sent instead of queueing for hours, and more than 50 transitions of one
//! alarm at once (a storm) always go out as one notification. Nothing here runs on the write
//! path: a channel down for hours costs outbox entries on disk, not ingest.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wattdb_storage::Storage;

use super::alarm_runtime::AlarmRuntime;
use super::channel::{CHANNEL_KIND, ChannelDef, Request};
use super::outbox::Notification;
use super::stored::definitions;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(500);

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub struct Delivery {
    runtime: Arc<AlarmRuntime>,
    storage: Storage,
    client: reqwest::Client,
    /// Per channel: when its requests of the last minute were sent.
    sent: Mutex<HashMap<String, VecDeque<i64>>>,
    /// Channels with sends in flight: not given more until those end.
    busy: Mutex<HashSet<String>>,
}

impl Delivery {
    pub fn new(runtime: Arc<AlarmRuntime>, storage: Storage) -> Result<Arc<Delivery>, String> {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| format!("building the HTTP client: {e}"))?;
        Ok(Arc::new(Delivery {
            runtime,
            storage,
            client,
            sent: Mutex::new(HashMap::new()),
            busy: Mutex::new(HashSet::new()),
        }))
    }

    pub fn spawn(
        self: &Arc<Self>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let d = self.clone();
        tokio::spawn(async move {
            let mut last_prune = 0;
            loop {
                tokio::select! {
                    _ = d.runtime.delivery_wake.notified() => {}
                    _ = tokio::time::sleep(POLL) => {}
                    _ = shutdown.changed() => {}
                }
                if *shutdown.borrow() {
                    break;
                }
                d.round().await;
                let now = now_ms();
                if now - last_prune > 3_600_000 {
                    last_prune = now;
                    let rt = d.runtime.clone();
                    match tokio::task::spawn_blocking(move || rt.outbox().prune(now)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => tracing::warn!(error = %e, "pruning the notification outbox"),
                        Err(e) => tracing::warn!(error = %e, "pruning the notification outbox"),
                    }
                }
            }
        })
    }

    /// Start sending what is due now on every channel that has nothing in flight.
    pub async fn round(self: &Arc<Self>) {
        // Which channels have sends in flight, taken *before* reading what is due: a
        // send that ends between the two stores its entries as sent first and then
        // leaves `busy`, so a channel missing from this set has no send whose results
        // the read below could miss (read in the other order, an entry just sent was
        // still pending in `due` and went out twice).
        let in_flight: HashSet<String> = self.lock_busy().clone();
        let due = self.runtime.outbox().due(now_ms());
        if due.is_empty() {
            return;
        }
        let channels: HashMap<String, ChannelDef> =
            definitions::<ChannelDef>(self.storage.rules(CHANNEL_KIND))
                .into_iter()
                .map(|c| (c.name.clone(), c))
                .collect();
        let mut by_channel: HashMap<String, Vec<Notification>> = HashMap::new();
        for n in due {
            by_channel.entry(n.channel.clone()).or_default().push(n);
        }
        for (name, entries) in by_channel {
            let Some(def) = channels.get(&name).cloned() else {
                let now = now_ms();
                let failed: Vec<Notification> = entries
                    .into_iter()
                    .map(|mut n| {
                        n.status = "failed".into();
                        n.last_error = Some(format!("channel {name} was dropped"));
                        n.next_attempt_ms = now;
                        n
                    })
                    .collect();
                self.store(failed).await;
                continue;
            };
            if in_flight.contains(&name) || !self.lock_busy().insert(name.clone()) {
                continue; // its earlier sends are still going
            }
            let slots = self.slots(&def);
            if slots == 0 {
                self.lock_busy().remove(&name);
                continue;
            }
            let d = self.clone();
            tokio::spawn(async move {
                let (channel, requests, entries) =
                    send_channel(d.client.clone(), def, entries, slots).await;
                d.record_sends(&channel, requests);
                d.store(entries).await;
                d.lock_busy().remove(&channel);
                // What came due meanwhile is not left to the next poll.
                d.runtime.delivery_wake.notify_one();
            });
        }
    }

    fn lock_busy(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.busy.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Store updated entries (an fsync, so off the async workers).
    async fn store(&self, entries: Vec<Notification>) {
        let rt = self.runtime.clone();
        match tokio::task::spawn_blocking(move || rt.outbox().update(&entries)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "updating the notification outbox"),
            Err(e) => tracing::error!(error = %e, "updating the notification outbox"),
        }
    }

    /// Requests `def` may still send in the current minute (`usize::MAX`: no limit).
    fn slots(&self, def: &ChannelDef) -> usize {
        if def.rate_per_minute == 0 {
            return usize::MAX;
        }
        let now = now_ms();
        let mut sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        let times = sent.entry(def.name.clone()).or_default();
        while times.front().is_some_and(|t| now - t >= 60_000) {
            times.pop_front();
        }
        (def.rate_per_minute as usize).saturating_sub(times.len())
    }

    fn record_sends(&self, channel: &str, requests: usize) {
        let now = now_ms();
        let mut sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        let times = sent.entry(channel.to_string()).or_default();
        times.extend(std::iter::repeat_n(now, requests));
    }
}

async fn post(client: &reqwest::Client, def: &ChannelDef, req: Request) -> Result<(), String> {
    if def.kind == "mqtt" {
        return publish_mqtt(def, req).await;
    }
    let mut rb = client.post(&req.url).body(req.body);
    for (k, v) in &req.headers {
        rb = rb.header(k, v);
    }
    let resp = rb
        .send()
        .await
        // Without the URL: reqwest's message names it, query string (a WeCom key, a
        // DingTalk access token) and all, and this text is shown in system.notifications.
        .map_err(|e| format!("{}: {}", def.redacted_url(), e.without_url()))?;
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    def.accepted(status, &body)
}

/// Publish `req.body` to topic `req.url` at QoS 1 on the channel's broker (one short
/// connection per notification: alarms are rare next to readings); success is the
/// broker's PUBACK within the request timeout.
async fn publish_mqtt(def: &ChannelDef, req: Request) -> Result<(), String> {
    use rumqttc::Outgoing;
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason};
    use rumqttc::v5::{AsyncClient, Event};
    let target = def.redacted_url();
    let client_id = format!("wattdb-alarm-{}", uuid::Uuid::new_v4().simple());
    let mut opts = crate::broker_client::connection_options(
        &def.url,
        client_id,
        None,
        None,
        def.ca_file.as_deref().map(std::path::Path::new),
    )
    .map_err(|e| e.to_string())?;
    opts.set_keep_alive(Duration::from_secs(10));
    opts.set_max_packet_size(Some(1 << 20));
    let (client, mut events) = AsyncClient::new(opts, 4);
    client
        .publish(
            req.url.clone(),
            QoS::AtLeastOnce,
            false,
            req.body.into_bytes(),
        )
        .await
        .map_err(|e| format!("{target}: {e}"))?;
    let acked = tokio::time::timeout(REQUEST_TIMEOUT, async {
        let mut pkid = None;
        loop {
            match events.poll().await {
                Ok(Event::Outgoing(Outgoing::Publish(id))) => pkid = Some(id),
                Ok(Event::Incoming(Packet::PubAck(a))) if Some(a.pkid) == pkid => {
                    // "No matching subscribers" is still accepted (MQTT 5, 3.4.2.1).
                    return match a.reason {
                        PubAckReason::Success | PubAckReason::NoMatchingSubscribers => Ok(()),
                        refused => Err(format!(
                            "{target}: the broker refused the publish: {refused:?}"
                        )),
                    };
                }
                Ok(_) => {}
                Err(e) => return Err(format!("{target}: {e}")),
            }
        }
    })
    .await
    .unwrap_or_else(|_| Err(format!("{target}: no PUBACK within {REQUEST_TIMEOUT:?}")));
    let _ = client.disconnect().await;
    // Let the DISCONNECT go out (best effort).
    let _ = tokio::time::timeout(Duration::from_millis(200), events.poll()).await;
    acked
}

/// More than this many transitions of one alarm due at once on a channel (a
/// concentrator or the broker went away) go out as one grouped notification.
const STORM_SERIES: usize = 50;

/// Send `entries` on `def` within `slots` requests: a storm of one alarm as one
/// notification, the rest one by one if they fit, else as one digest. Entries that do
/// not fit stay pending. Returns the channel, the requests made and the updated entries.
async fn send_channel(
    client: reqwest::Client,
    def: ChannelDef,
    mut entries: Vec<Notification>,
    slots: usize,
) -> (String, usize, Vec<Notification>) {
    let mut per_alarm: std::collections::BTreeMap<&str, Vec<usize>> = Default::default();
    for (i, n) in entries.iter().enumerate() {
        per_alarm.entry(n.event.alarm.as_str()).or_default().push(i);
    }
    let mut messages: Vec<Vec<usize>> = Vec::new();
    let mut rest: Vec<usize> = Vec::new();
    for (_, idx) in per_alarm {
        if idx.len() > STORM_SERIES {
            messages.push(idx);
        } else {
            rest.extend(idx);
        }
    }
    rest.sort_unstable();
    let room = slots.saturating_sub(messages.len());
    if rest.len() <= room {
        messages.extend(rest.into_iter().map(|i| vec![i]));
    } else if !rest.is_empty() {
        messages.push(rest);
    }
    let mut requests = 0;
    // Set by the first failure: the channel is down or hanging; the rest waits as long.
    let mut deferred_until: Option<i64> = None;
    for group in messages.into_iter().take(slots) {
        if let Some(until) = deferred_until {
            for &i in &group {
                entries[i].next_attempt_ms = until;
            }
            continue;
        }
        let events: Vec<_> = group.iter().map(|&i| &entries[i].event).collect();
        let req = def.request(&events, now_ms());
        requests += 1;
        let result = post(&client, &def, req).await;
        let now = now_ms();
        if let Err(e) = &result {
            tracing::warn!(channel = %def.name, events = group.len(), error = %e, "notification not delivered; will retry");
        }
        for &i in &group {
            match &result {
                Ok(()) => entries[i].sent(now),
                Err(e) => entries[i].failed(e.clone(), now),
            }
        }
        if result.is_err() {
            deferred_until = group.first().map(|&i| entries[i].next_attempt_ms.max(now));
        }
    }
    (def.name.clone(), requests, entries)
}
