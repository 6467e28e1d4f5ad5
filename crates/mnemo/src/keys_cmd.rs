//! `mnemo certs create` and `mnemo token create`: the key material of a
//! secure cluster.

use mnemo_node::security::{Claims, certs, token};

use crate::args::{CertsCreateArgs, TokenCreateArgs};
use crate::client::Failure;

pub(crate) fn certs_create(a: &CertsCreateArgs) -> Result<(), Failure> {
    let created = certs::create(&a.dir, &a.nodes, &a.hosts)
        .map_err(|e| Failure(format!("certs create: {e}")))?;
    for path in &created.written {
        println!("wrote {}", path.display());
    }
    for path in &created.kept {
        println!("kept  {}", path.display());
    }
    let dir = a.dir.display();
    println!(
        "nodes:   mnemo node --certs-dir {dir} --id <node> ...  (copy ca.crt, <node>.crt, \
         <node>.key and cluster.key to each node; ca.key stays with you)"
    );
    println!(
        "clients: export MNEMO_CERTS_DIR={dir}  (operators; a token holder needs ca.crt \
         alone, in a directory of its own)"
    );
    Ok(())
}

pub(crate) fn token_create(a: &TokenCreateArgs) -> Result<(), Failure> {
    if a.spaces.len() > token::MAX_PATTERNS {
        return Err(Failure(format!(
            "--spaces has {} patterns; the limit is {}",
            a.spaces.len(),
            token::MAX_PATTERNS
        )));
    }
    for pattern in &a.spaces {
        token::check_pattern(pattern).map_err(|e| Failure(format!("--spaces: {e}")))?;
    }
    let expires = match &a.expires {
        None => None,
        Some(text) => {
            let lasts = humantime::parse_duration(text)
                .map_err(|e| Failure(format!("--expires {text:?}: {e} (for instance 30d, 12h)")))?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_err(|e| Failure(format!("the clock is before 1970: {e}")))?;
            let at = now
                .checked_add(lasts)
                .ok_or_else(|| Failure(format!("--expires {text:?} is too far away")))?;
            Some(at.as_secs())
        }
    };
    let key = mnemo_node::security::token_key(&a.certs_dir)
        .map_err(|e| Failure(format!("--certs-dir: {e}")))?;
    println!(
        "{}",
        key.sign(&Claims {
            spaces: a.spaces.clone(),
            read_only: a.read_only,
            expires,
        })
    );
    Ok(())
}
