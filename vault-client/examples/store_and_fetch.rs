//! Stores a consent token in vaultd and reads it back: what a platform service does with
//! `vault-client`. The client comes from the environment as `vault-cli`'s does
//! (`VAULT_SOCKET`, or `VAULT_ADDR` with `VAULT_CERT`, `VAULT_KEY` and `VAULT_CA`); personal
//! data and the token come on stdin, never on the command line:
//!
//! ```sh
//! printf 'DE89370400440532013000\nthe-access-token' |
//!     VAULT_SOCKET=./vaultd-dev/vaultd.sock cargo run -p vault-client --example store_and_fetch -- acme consent-1
//! ```
//!
//! The first line of stdin is the account the consent covers, the rest is the token.

use std::io::Read as _;

use vault_client::wire::{Binding, Expect, PutToken};
use vault_client::{ApiCode, Client, Secret};
use zeroize::Zeroizing;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(tenant), Some(id), None) = (args.next(), args.next(), args.next()) else {
        return Err("usage: store_and_fetch TENANT TOKEN_ID < account-and-token".into());
    };
    let mut input = Zeroizing::new(Vec::new());
    std::io::stdin().read_to_end(&mut input)?;
    let split = input
        .iter()
        .position(|&b| b == b'\n')
        .ok_or("stdin: account, newline, token")?;
    let account = std::str::from_utf8(&input[..split])?.trim().to_owned();
    let secret = Secret::from_slice(&input[split + 1..]);

    let client = Client::from_env()?;
    // A tenant is created once; a second run finds it there.
    match client.create_tenant(&tenant).await {
        Err(e) if e.code() != Some(&ApiCode::Conflict) => return Err(e.into()),
        _ => {}
    }
    let binding = Binding {
        subject: format!("user-of-{id}"),
        bank: "examplebank".into(),
        account: account.clone(),
        scope: "accounts".into(),
    };
    let put = PutToken::new(secret, binding);
    let stored = client.put_token(&tenant, &id, &put).await.map_err(|e| {
        // Every refusal names its request: the audit entry and the log line carry the same id.
        format!("{e} (request id {})", e.request_id().unwrap_or("-"))
    })?;
    // Read it back only if it is still bound to the same account.
    let expect = Expect {
        account: Some(account),
        ..Expect::default()
    };
    let token = client.unseal_token(&tenant, &id, Some(expect)).await?;
    if token.secret().expose_secret() != put.secret.expose_secret() {
        return Err("the token read back differs from the one stored".into());
    }
    println!(
        "stored {tenant}/{id} at revision {} under data key version {}; read back {} bytes",
        stored.revision,
        stored.key_version,
        token.secret().len()
    );
    Ok(())
}
