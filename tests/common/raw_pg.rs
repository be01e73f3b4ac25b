//! The PostgreSQL wire protocol by hand, for what no driver here sends as such: the
//! message sequence libpq (psycopg), pgjdbc and node-postgres use for a statement with
//! parameters — Parse, Bind, Describe of the portal, Execute, Sync — without a Describe
//! of the statement before Bind. Trust authentication only (the test servers' default).

#![allow(dead_code)]

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One frontend message.
pub fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// The startup message of user and database `wattdb`.
pub fn startup() -> Vec<u8> {
    let mut body = 196_608u32.to_be_bytes().to_vec();
    body.extend_from_slice(b"user\0wattdb\0database\0wattdb\0\0");
    let mut m = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    m.extend_from_slice(&body);
    m
}

/// A backend message: its tag and body.
pub struct Reply {
    pub tag: u8,
    pub body: Vec<u8>,
}

impl Reply {
    /// A DataRow's values as text (`None`: NULL).
    pub fn row(&self) -> Vec<Option<String>> {
        let mut at = 2;
        let count = u16::from_be_bytes([self.body[0], self.body[1]]);
        (0..count)
            .map(|_| {
                let len = i32::from_be_bytes(self.body[at..at + 4].try_into().unwrap());
                at += 4;
                if len < 0 {
                    return None;
                }
                let value = String::from_utf8_lossy(&self.body[at..at + len as usize]).into();
                at += len as usize;
                Some(value)
            })
            .collect()
    }

    /// A RowDescription's column names.
    pub fn columns(&self) -> Vec<String> {
        let count = u16::from_be_bytes([self.body[0], self.body[1]]);
        let mut at = 2;
        (0..count)
            .map(|_| {
                let end = at + self.body[at..].iter().position(|b| *b == 0).unwrap();
                let name = String::from_utf8_lossy(&self.body[at..end]).into();
                at = end + 1 + 18;
                name
            })
            .collect()
    }

    /// An ErrorResponse's SQLSTATE.
    pub fn sqlstate(&self) -> Option<String> {
        self.body
            .split(|b| *b == 0)
            .find(|f| f.first() == Some(&b'C'))
            .map(|f| String::from_utf8_lossy(&f[1..]).into())
    }
}

/// Read backend messages up to and including ReadyForQuery.
pub async fn until_ready(s: &mut TcpStream) -> Vec<Reply> {
    let mut replies = Vec::new();
    loop {
        let tag = s.read_u8().await.expect("a message");
        let len = s.read_u32().await.expect("its length") as usize;
        let mut body = vec![0; len - 4];
        s.read_exact(&mut body).await.expect("its body");
        replies.push(Reply { tag, body });
        if tag == b'Z' {
            return replies;
        }
    }
}

/// A connection past its startup.
pub async fn connect(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(&startup()).await.unwrap();
    until_ready(&mut s).await;
    s
}

/// Parse (unnamed, no types given), Bind of `params` as text, Describe of the portal,
/// Execute, Sync — what libpq sends for `PQexecParams` — and the replies.
pub async fn exec_params(s: &mut TcpStream, sql: &str, params: &[Option<&str>]) -> Vec<Reply> {
    let mut parse = b"\0".to_vec();
    parse.extend_from_slice(sql.as_bytes());
    parse.extend_from_slice(&[0, 0, 0]);
    let mut bind = b"\0\0".to_vec();
    bind.extend_from_slice(&0u16.to_be_bytes());
    bind.extend_from_slice(&(params.len() as u16).to_be_bytes());
    for p in params {
        match p {
            Some(v) => {
                bind.extend_from_slice(&(v.len() as i32).to_be_bytes());
                bind.extend_from_slice(v.as_bytes());
            }
            None => bind.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    bind.extend_from_slice(&0u16.to_be_bytes());
    let mut out = message(b'P', &parse);
    out.extend(message(b'B', &bind));
    out.extend(message(b'D', b"P\0"));
    out.extend(message(b'E', b"\0\0\0\0\0"));
    out.extend(message(b'S', b""));
    s.write_all(&out).await.unwrap();
    until_ready(s).await
}
