//! The SMTP submission front-end (RFC 5321, 3207, 4954, 7628 §4.4).

use crate::client::Client;
use crate::gateway::{Outcome, Service};

pub async fn serve(mut client: Client, svc: &Service) -> Outcome {
    let _ = client
        .send(format!("421 4.3.0 {} SMTP is not available yet\r\n", svc.hostname).as_bytes())
        .await;
    Outcome::default().ended("closed")
}
