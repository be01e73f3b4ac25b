//! A local HTTP receiver for notification tests: records every request (path, query,
//! headers, body) and answers the way WeCom/DingTalk robots do (HTTP 200 with an
//! `errcode`), or a plain status for webhooks. The answer is chosen per request by a
//! closure, so a test can throttle, fail or accept.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub query: String,
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }
}

/// (status, body) for the n-th request (0-based) to a path.
pub type Answer = dyn Fn(&str, usize) -> (u16, String) + Send + Sync;

pub struct Receiver {
    pub port: u16,
    pub requests: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Listen on `port` (0: any free port).
    pub async fn start(port: u16, answer: Arc<Answer>) -> Receiver {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the receiver");
        let port = listener.local_addr().unwrap().port();
        let requests: Arc<Mutex<Vec<Received>>> = Arc::default();
        let r2 = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let requests = r2.clone();
                let answer = answer.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let requests = requests.clone();
                        let answer = answer.clone();
                        async move {
                            let path = req.uri().path().to_string();
                            let query = req.uri().query().unwrap_or("").to_string();
                            let headers = req
                                .headers()
                                .iter()
                                .map(|(k, v)| {
                                    (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())
                                })
                                .collect();
                            let body = req.into_body().collect().await.map(|b| b.to_bytes());
                            let body =
                                String::from_utf8_lossy(&body.unwrap_or_default()).to_string();
                            let n = {
                                let mut r = requests.lock().unwrap();
                                let n = r.iter().filter(|x| x.path == path).count();
                                r.push(Received {
                                    path: path.clone(),
                                    query,
                                    headers,
                                    body,
                                });
                                n
                            };
                            let (status, text) = answer(&path, n);
                            let mut resp = Response::new(Full::new(Bytes::from(text)));
                            *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
            }
        });
        Receiver {
            port,
            requests,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn received(&self, path: &str) -> Vec<Received> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

/// A robot's success answer.
pub fn ok_errcode() -> (u16, String) {
    (200, r#"{"errcode":0,"errmsg":"ok"}"#.to_string())
}
