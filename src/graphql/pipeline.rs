//! The schema's one extension: every step the service adds around the engine, in one place and
//! in the order they run.
//!
//! The engine passes every field of every answer through each extension's `resolve` hook (a
//! boxed future per extension and field) and every request through each extension's other
//! hooks, even an extension that only hands them on. Five extensions made a field pass through
//! five; one makes it one. The steps themselves live beside what they serve:
//!
//! | hook | step |
//! | --- | --- |
//! | `request` | errors published, metrics recorded (`ext`) |
//! | `subscribe` | a subscription's errors published (`ext`) |
//! | `prepare_request` | the document from the cache or persisted (`documents`) |
//! | `parse_query` | then, in this order: the read budget (`reads`), the shape limits and mutation rate limits (`guard`), what validation checks and what the HTTP layer may cache or share (`documents`), the metrics label (`ext`) |
//! | `validation` | a kept result or the engine's rules (`documents`, `validated`) |
//! | `execute` | a query waits for a read slot (`reads`) |
//! | `resolve` | a root field answers within its budget (`deadline`) |
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextPrepareRequest,
    NextRequest, NextResolve, NextSubscribe, NextValidation, ResolveInfo,
};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{
    Request, Response, ServerError, ServerResult, ValidationResult, Value, Variables,
};
use futures_util::stream::BoxStream;

use super::documents::{DocumentRequest, Documents};
use super::ext::Observed;

/// The extension's factory: what every request shares (the documents and validations kept).
#[derive(Default)]
pub struct Pipeline {
    documents: Arc<Documents>,
}

impl ExtensionFactory for Pipeline {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(PipelineExt {
            documents: self.documents.clone(),
            document: DocumentRequest::default(),
            observed: Observed::default(),
            query: AtomicBool::new(false),
        })
    }
}

/// One request's pass through the steps.
struct PipelineExt {
    documents: Arc<Documents>,
    document: DocumentRequest,
    observed: Observed,
    /// The operation is a query (read): it waits for a read slot.
    query: AtomicBool,
}

#[async_trait::async_trait]
impl Extension for PipelineExt {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let started = Instant::now();
        let mut resp = next.run(ctx).await;
        self.observed.finish(started, &mut resp);
        resp
    }

    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        super::ext::published(next.run(ctx, stream))
    }

    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        mut request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        self.documents.prepare(&self.document, &mut request)?;
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let doc = next.run(ctx, query, variables).await?;
        let query = super::reads::charge(ctx, &doc)?;
        self.query.store(query, Ordering::Relaxed);
        super::guard::check(ctx, &doc, self.document.operation().as_deref()).await?;
        self.document.parsed(ctx, &doc, variables)?;
        self.observed.parsed(&doc);
        Ok(doc)
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let result = self.documents.validate(&self.document, ctx, next).await?;
        self.observed.validated();
        Ok(result)
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let query = self.query.load(Ordering::Relaxed);
        super::reads::execute(query, ctx, operation_name, next).await
    }

    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        super::deadline::resolve(ctx, info, next).await
    }
}
