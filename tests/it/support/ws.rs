//! A minimal graphql-transport-ws client over a real WebSocket.
use std::time::Duration;

use serde_json::{json, Value};

/// A minimal graphql-transport-ws client over a real WebSocket.
pub struct WsClient {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl WsClient {
    /// Connect and initialise; `Err` carries the close reason when the server refuses.
    pub async fn connect(base: &str, token: Option<&str>) -> Result<WsClient, String> {
        WsClient::connect_with(base, token, "graphql-transport-ws").await
    }

    /// `connect` with another sub-protocol (`graphql-ws`, the legacy one: the same
    /// `connection_init` / `connection_ack` handshake).
    pub async fn connect_with(
        base: &str,
        token: Option<&str>,
        protocol: &str,
    ) -> Result<WsClient, String> {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};
        let url = format!("{}/graphql", base.replacen("http", "ws", 1));
        let mut req = url.into_client_request().map_err(|e| e.to_string())?;
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
        let (mut socket, resp) = tokio_tungstenite::connect_async(req)
            .await
            .map_err(|e| e.to_string())?;
        assert_eq!(
            resp.headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok()),
            Some(protocol)
        );
        let payload = match token {
            Some(t) => json!({ "Authorization": format!("Bearer {t}") }),
            None => json!({}),
        };
        socket
            .send(Message::Text(
                json!({ "type": "connection_init", "payload": payload })
                    .to_string()
                    .into(),
            ))
            .await
            .map_err(|e| e.to_string())?;
        loop {
            match tokio::time::timeout(Duration::from_secs(5), socket.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    let v: Value = serde_json::from_str(&t).map_err(|e| e.to_string())?;
                    if v["type"] == "connection_ack" {
                        return Ok(WsClient { socket });
                    }
                }
                Ok(Some(Ok(Message::Close(frame)))) => return Err(format!("closed: {frame:?}")),
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(e))) => return Err(e.to_string()),
                Ok(None) => return Err("closed".into()),
                Err(_) => return Err("no connection_ack".into()),
            }
        }
    }

    /// Send one protocol message.
    pub async fn send(&mut self, msg: Value) {
        use futures_util::SinkExt;
        use tokio_tungstenite::tungstenite::Message;
        self.socket
            .send(Message::Text(msg.to_string().into()))
            .await
            .expect("send a message");
    }

    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        self.send(json!({ "id": id, "type": "subscribe", "payload": { "query": query, "variables": variables } }))
            .await;
    }

    /// End a subscription from the client's side.
    pub async fn complete(&mut self, id: &str) {
        self.send(json!({ "id": id, "type": "complete" })).await;
    }

    /// Every frame that arrives within `wait` (pings answered by the library as they are read),
    /// as `ping`, `text`, `close:<code>`; stops at a close or the end of the stream.
    pub async fn frames(&mut self, wait: Duration) -> Vec<String> {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        let deadline = tokio::time::Instant::now() + wait;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.socket.next()).await {
                Ok(Some(Ok(Message::Ping(_)))) => out.push("ping".to_string()),
                Ok(Some(Ok(Message::Text(_)))) => out.push("text".to_string()),
                Ok(Some(Ok(Message::Close(frame)))) => {
                    out.push(format!(
                        "close:{}",
                        frame.map(|f| u16::from(f.code)).unwrap_or(0)
                    ));
                    return out;
                }
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_))) | Ok(None) => {
                    out.push("end".to_string());
                    return out;
                }
                Err(_) => return out,
            }
        }
    }

    /// The next `next`/`error`/`complete` message, or `None` after `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let v = self.message(left).await?;
            if ["next", "error", "complete"].contains(&v["type"].as_str().unwrap_or("")) {
                return Some(v);
            }
        }
    }

    /// The next text message, whatever its type; `None` after `wait` or when the socket ends.
    pub async fn message(&mut self, wait: Duration) -> Option<Value> {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.socket.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    return Some(serde_json::from_str(&t).expect("json message"));
                }
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Err(_) => return None,
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_))) => return None,
            }
        }
    }
}

pub const SEAT_UPDATES: &str = "subscription($show: ID!) { seatUpdates(showId: $show) {
    showId version availableSeats heldSeats bookedSeats seats { id status heldByMe } } }";
