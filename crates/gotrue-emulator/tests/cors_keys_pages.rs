//! What a browser app and supabase-js need beyond the flows: CORS, API keys
//! in both of Supabase's forms, and the admin list's pagination headers.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Harness, PASSWORD, assert_error, parts};
use reqwest::Method;

#[tokio::test]
async fn preflights_need_no_key_and_responses_expose_the_headers_supabase_js_reads() {
    let h = Harness::start().await;
    let preflight = h
        .http
        .request(Method::OPTIONS, h.url("/token?grant_type=password"))
        .header("origin", "http://localhost:5173")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "apikey,authorization,content-type,x-client-info,x-supabase-api-version",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 200);
    let headers = preflight.headers();
    assert_eq!(headers["access-control-allow-origin"], "*");
    let allowed = headers["access-control-allow-headers"].to_str().unwrap().to_lowercase();
    for name in ["apikey", "authorization", "content-type", "x-client-info", "x-supabase-api-version"] {
        assert!(allowed.contains(name), "{name} not in {allowed}");
    }
    assert!(headers["access-control-allow-methods"].to_str().unwrap().contains("PUT"));
    assert_eq!(h.emu.stats().total(), 0, "a preflight is not a GoTrue request");

    // Real requests carry the CORS headers, errors included.
    let refused = h.http.get(h.url("/user")).header("origin", "http://localhost:5173").send().await.unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(refused.headers()["access-control-allow-origin"], "*");
    let listed = h.service(Method::GET, "/admin/users").header("origin", "http://localhost:5173").send().await;
    let exposed = listed.unwrap().headers()["access-control-expose-headers"].to_str().unwrap().to_lowercase();
    assert!(exposed.contains("x-total-count") && exposed.contains("link"), "{exposed}");
}

#[tokio::test]
async fn legacy_jwt_keys_work_alongside_the_new_keys() {
    let h = Harness::start().await;
    let keys = h.emu.api_keys();
    assert!(keys.publishable.starts_with("sb_publishable_") && keys.secret.starts_with("sb_secret_"));
    assert_eq!((keys.publishable.as_str(), keys.secret.as_str()), (h.emu.anon_key(), h.emu.service_role_key()));
    let role = |key: &str| {
        let payload = key.split('.').nth(1).unwrap();
        let bytes = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).unwrap();
        serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()
    };
    assert_eq!(role(&keys.anon)["role"], "anon");
    assert_eq!(role(&keys.anon)["iss"], "supabase");
    assert_eq!(role(&keys.service_role)["role"], "service_role");

    h.emu.create_user("lee@example.com", PASSWORD).unwrap();
    for key in [&keys.publishable, &keys.anon] {
        let grant = h
            .http
            .post(h.url("/token?grant_type=password"))
            .header("apikey", key.as_str())
            .json(&serde_json::json!({ "email": "lee@example.com", "password": PASSWORD }))
            .send()
            .await
            .unwrap();
        assert_eq!(grant.status(), 200, "apikey {key}");
    }
    // The legacy service-role key is an admin credential, as apikey and bearer.
    let list = h.list_users(&keys.service_role, None).await;
    assert_eq!(list.status(), 200);
    let list = h.list_users(&keys.anon, Some(&keys.service_role)).await;
    assert_eq!(list.status(), 200);
    // The legacy anon key is no admin.
    let anon = h.list_users(&keys.anon, None).await;
    assert_error(anon, 403, "not_admin").await;
    // A JWT that merely looks like a key is not one.
    let forged = keys.anon.replace('.', ".x");
    let refused = h.http.get(h.url("/health")).header("apikey", forged).send().await.unwrap();
    assert_eq!(refused.status(), 401);
}

fn links(response: &reqwest::Response) -> String {
    response.headers().get("link").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

#[tokio::test]
async fn admin_list_sends_link_and_total_count_like_gotrue() {
    let h = Harness::start().await;
    for n in 0..5 {
        h.emu.create_user(&format!("u{n}@example.com"), PASSWORD).unwrap();
    }
    let base = format!("{}/auth/v1/admin/users", h.emu.base_url());
    let first = h.service(Method::GET, "/admin/users?page=1&per_page=2").send().await.unwrap();
    assert_eq!(first.headers()["x-total-count"], "5");
    assert_eq!(
        links(&first),
        format!("<{base}?page=2&per_page=2>; rel=\"next\", <{base}?page=3&per_page=2>; rel=\"last\"")
    );
    let (_, _, body) = parts(first).await;
    assert_eq!(body["users"].as_array().unwrap().len(), 2);

    let last = h.service(Method::GET, "/admin/users?page=3&per_page=2").send().await.unwrap();
    assert_eq!(links(&last), format!("<{base}?page=3&per_page=2>; rel=\"last\""));
    let (_, _, body) = parts(last).await;
    assert_eq!(body["users"].as_array().unwrap().len(), 1);

    // Defaults: page 1, 50 per page.
    let default = h.service(Method::GET, "/admin/users").send().await.unwrap();
    assert_eq!(links(&default), format!("<{base}?page=1&per_page=50>; rel=\"last\""));
    let bad = h.service(Method::GET, "/admin/users?page=x").send().await.unwrap();
    assert_error(bad, 400, "validation_failed").await;
}
