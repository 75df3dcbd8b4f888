//! PostgreSQL side of personal data: what an export reads that no other part
//! reads (a user's account requests and usage records), and the erasure
//! of a user's personal data in one transaction (README "Personal data";
//! the append-only exceptions it relies on: `migrations/0011_erasure.sql`).

use sqlx::{PgPool, Postgres, Transaction};

use super::{db, names};
use ferrum_model::lease::{self, LeaseState};
use ferrum_model::privacy::Scrub;
use ferrum_model::usage::Dimension;
use ferrum_model::{AccountRequestState, UserId};
use ferrum_store::{AccountRequestRow, DbError, DbResult, Erasure, RawRecord, UsageRecordRow, deployment_keys, select_requests};

pub(super) async fn user_requests(pool: &PgPool, user: UserId) -> DbResult<Vec<AccountRequestRow>> {
    let rows = select_requests!("WHERE user_id = $1 ORDER BY id", user.0).fetch_all(pool).await.map_err(db)?;
    rows.into_iter().map(AccountRequestRow::try_from).collect()
}

pub(super) async fn user_records(pool: &PgPool, name: &str) -> DbResult<Vec<UsageRecordRow>> {
    let rows = sqlx::query_as!(
        RawRecord,
        r#"SELECT id, lease_id, node_id, user_name, project_name, node_name, site, cluster, gpu_model, gpu_count, lease_type,
                  reserved_start, reserved_end, start, "end", recorded_at
           FROM usage_records WHERE user_name = $1 ORDER BY id"#,
        name
    )
    .fetch_all(pool)
    .await
    .map_err(db)?;
    rows.into_iter().map(RawRecord::into_row).collect()
}

/// The SSH public keys the user gave: registered, and those his leases'
/// deployments installed.
async fn user_keys(tx: &mut Transaction<'static, Postgres>, user: UserId) -> DbResult<Vec<String>> {
    let mut keys =
        sqlx::query_scalar!("SELECT public_key FROM ssh_keys WHERE user_id = $1", user.0).fetch_all(&mut **tx).await.map_err(db)?;
    let specs = sqlx::query_scalar!("SELECT d.spec FROM deployments d JOIN leases l ON l.id = d.lease_id WHERE l.owner_id = $1", user.0)
        .fetch_all(&mut **tx)
        .await
        .map_err(db)?;
    for spec in specs {
        keys.extend(deployment_keys(&spec));
    }
    let deploys = sqlx::query_scalar!("SELECT deploy FROM leases WHERE owner_id = $1 AND deploy IS NOT NULL", user.0)
        .fetch_all(&mut **tx)
        .await
        .map_err(db)?;
    for deploy in deploys.into_iter().flatten() {
        keys.extend(deployment_keys(&deploy));
    }
    keys.sort();
    keys.dedup();
    Ok(keys)
}

pub(super) async fn erase(tx: &mut Transaction<'static, Postgres>, e: &Erasure) -> DbResult<()> {
    let (user, old, new, at) = (e.user.0, e.name.as_str(), e.pseudonym.as_str(), e.at);
    let open = sqlx::query_scalar!(
        "SELECT id FROM leases WHERE owner_id = $1 AND state <> ALL($2)",
        user,
        &names(lease::TERMINAL.map(LeaseState::as_str))
    )
    .fetch_all(&mut **tx)
    .await
    .map_err(db)?;
    if !open.is_empty() {
        return Err(DbError::Raced { what: "user's leases" });
    }
    let keys = user_keys(tx, e.user).await?;
    let scrub = Scrub { login: old, pseudonym: new, emails: &e.emails };
    sqlx::query!("INSERT INTO erasures (pseudonym, erased_at, erased_by, open) VALUES ($1, $2, $3, TRUE)", new, at, e.by)
        .execute(&mut **tx)
        .await
        .map_err(db)?;

    // The account and what signs in as it.
    let done = sqlx::query!(
        "UPDATE users SET name = $2, email = NULL, password_hash = NULL, disabled_at = COALESCE(disabled_at, $3), disabled_reason = $4
         WHERE id = $1 AND name = $5",
        user,
        new,
        at,
        e.disabled_reason,
        old
    )
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    if done.rows_affected() == 0 {
        return Err(DbError::NotFound { what: "user", name: old.to_owned() });
    }
    sqlx::query!("UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $2), name = NULL WHERE user_id = $1", user, at)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    sqlx::query!("DELETE FROM web_sessions WHERE user_id = $1", user).execute(&mut **tx).await.map_err(db)?;
    sqlx::query!("UPDATE activation_links SET used_at = COALESCE(used_at, $2) WHERE user_id = $1", user, at)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    sqlx::query!("DELETE FROM ssh_keys WHERE user_id = $1", user).execute(&mut **tx).await.map_err(db)?;
    // What ferrum told him (mails kept for the portal: his leases, by name).
    sqlx::query!("DELETE FROM notifications WHERE user_id = $1", user).execute(&mut **tx).await.map_err(db)?;

    // His account requests: those that made the account, and his others
    // decided already (found by e-mail address).
    let emails: Vec<String> = e.emails.iter().map(|m| m.to_lowercase()).collect();
    sqlx::query!(
        "UPDATE account_requests SET name = $2, email = '', affiliation = '', motivation = '', source = '', status = NULL, reason = NULL,
                email_token_sha256 = NULL
         WHERE user_id = $1 OR (state <> $3 AND lower(email) = ANY($4))",
        user,
        new,
        AccountRequestState::Pending.as_str(),
        &emails
    )
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    sqlx::query!("UPDATE account_requests SET decided_by = $2 WHERE decided_by = $1", old, new).execute(&mut **tx).await.map_err(db)?;

    // Usage, kept under the pseudonym.
    sqlx::query!("UPDATE usage_records SET user_name = $2 WHERE user_name = $1", old, new).execute(&mut **tx).await.map_err(db)?;
    sqlx::query!("UPDATE usage_rollups SET key = $2 WHERE dimension = $3 AND key = $1", old, new, Dimension::User.as_str())
        .execute(&mut **tx)
        .await
        .map_err(db)?;

    // The audit log: who, on what, and the strings of its details (its
    // time and action stay).
    for needle in std::iter::once(old).chain(e.emails.iter().map(String::as_str)) {
        let rows = sqlx::query!(
            "SELECT id, actor, target, detail FROM audit_log WHERE strpos(lower(actor || ' ' || target || ' ' || detail), lower($1)) > 0",
            needle
        )
        .fetch_all(&mut **tx)
        .await
        .map_err(db)?;
        for r in rows {
            sqlx::query!(
                "UPDATE audit_log SET actor = $1, target = $2, detail = $3 WHERE id = $4",
                scrub.text(&r.actor),
                scrub.text(&r.target),
                scrub.json(&r.detail),
                r.id
            )
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        }
    }
    // Who asked for what.
    sqlx::query!("UPDATE power_requests SET requested_by = $2 WHERE requested_by = $1", old, new).execute(&mut **tx).await.map_err(db)?;
    sqlx::query!("UPDATE agent_commands SET requested_by = $2 WHERE requested_by = $1", old, new).execute(&mut **tx).await.map_err(db)?;
    sqlx::query!("UPDATE deployments SET requested_by = $2 WHERE requested_by = $1", old, new).execute(&mut **tx).await.map_err(db)?;
    sqlx::query!("UPDATE boot_tokens SET created_by = $2 WHERE created_by = $1", old, new).execute(&mut **tx).await.map_err(db)?;

    // Texts with a login in them: the names and reasons of leases ("released
    // by NAME", "user 'NAME' disabled by NAME: ..."), node events.
    for needle in std::iter::once(old).chain(e.emails.iter().map(String::as_str)) {
        let rows = sqlx::query!(
            "SELECT id, name, reason FROM leases WHERE strpos(lower(COALESCE(name, '') || ' ' || COALESCE(reason, '')), lower($1)) > 0",
            needle
        )
        .fetch_all(&mut **tx)
        .await
        .map_err(db)?;
        for r in rows {
            let (name, reason) = (r.name.as_deref().map(|t| scrub.text(t)), r.reason.as_deref().map(|t| scrub.text(t)));
            sqlx::query!("UPDATE leases SET name = $1, reason = $2 WHERE id = $3", name, reason, r.id)
                .execute(&mut **tx)
                .await
                .map_err(db)?;
        }
        let rows =
            sqlx::query!("SELECT id, actor, reason FROM node_events WHERE strpos(lower(actor || ' ' || reason), lower($1)) > 0", needle)
                .fetch_all(&mut **tx)
                .await
                .map_err(db)?;
        for r in rows {
            sqlx::query!("UPDATE node_events SET actor = $1, reason = $2 WHERE id = $3", scrub.text(&r.actor), scrub.text(&r.reason), r.id)
                .execute(&mut **tx)
                .await
                .map_err(db)?;
        }
    }
    // Environments named OWNER/NAME, and what deployments recorded.
    sqlx::query!(
        "UPDATE leases SET deploy = jsonb_set(deploy::jsonb, '{environment}', to_jsonb($2::text || substr(deploy::jsonb ->> 'environment', length($1::text) + 1)))::text
         WHERE deploy IS NOT NULL AND left(deploy::jsonb ->> 'environment', length($1::text) + 1) = $1::text || '/'",
        old,
        new
    )
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    sqlx::query!(
        "UPDATE leases SET deploy = jsonb_set(deploy::jsonb, '{ssh_keys}', '[]'::jsonb)::text WHERE owner_id = $1 AND deploy IS NOT NULL",
        user
    )
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    sqlx::query!(
        "UPDATE deployments SET environment_owner = $2, spec = jsonb_set(spec::jsonb, '{environment,owner}', to_jsonb($2::text))::text WHERE environment_owner = $1",
        old,
        new
    )
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    sqlx::query!(
        "UPDATE deployments SET spec = jsonb_set(spec::jsonb, '{ssh_keys}', '[]'::jsonb)::text WHERE lease_id IN (SELECT id FROM leases WHERE owner_id = $1)",
        user
    )
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    for key in &keys {
        sqlx::query!("UPDATE agent_commands SET action = replace(action, $1, '(erased)') WHERE strpos(action, $1) > 0", key)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
    }

    sqlx::query!("UPDATE erasures SET open = FALSE WHERE pseudonym = $1", new).execute(&mut **tx).await.map_err(db)?;
    Ok(())
}
