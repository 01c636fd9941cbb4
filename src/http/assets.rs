//! The booking page, the IDE and their assets, embedded into the binary from `playground/` so
//! that the server works from any directory and offline.
use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "playground/"]
struct Assets;

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" => "application/json",
        _ => "application/octet-stream",
    }
}

fn serve(path: &str, cache: &'static str) -> Response {
    match Assets::get(path) {
        Some(file) => (
            [
                (header::CONTENT_TYPE, content_type(path)),
                (header::CACHE_CONTROL, cache),
            ],
            file.data.into_owned(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

pub async fn index() -> Response {
    serve("index.html", "no-cache")
}

pub fn ide() -> Response {
    serve("graphiql.html", "no-cache")
}

pub async fn asset(Path(path): Path<String>) -> Response {
    if path.contains("..") || path.ends_with(".html") {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    }
    let cache = if path.starts_with("vendor/") {
        "public, max-age=604800"
    } else {
        "no-cache"
    };
    serve(&path, cache)
}
