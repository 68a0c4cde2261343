//! The `dynamodb::<Api>` failpoints: an HTTP client around the SDK's own that, when the
//! point of a request's API fires, answers in place of DynamoDB with the error DynamoDB
//! would send (or with no answer at all), so the SDK parses it and the store classifies and
//! retries it as it would a real one.

use aws_sdk_dynamodb::config::Builder;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;

/// Wraps the HTTP client of the configuration `conf` was built from (`inner`; the SDK's
/// default HTTPS client when it names none) with the failpoints.
pub(crate) fn wrap(inner: Option<SharedHttpClient>, mut conf: Builder) -> Builder {
    let inner = inner.unwrap_or_else(|| {
        aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::AwsLc,
            ))
            .build_https()
    });
    conf.set_http_client(Some(SharedHttpClient::new(Faulty { inner })));
    conf
}

#[derive(Debug)]
struct Faulty {
    inner: SharedHttpClient,
}

impl HttpClient for Faulty {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(FaultyConnector {
            inner: self.inner.http_connector(settings, components),
        })
    }
}

#[derive(Debug)]
struct FaultyConnector {
    inner: SharedHttpConnector,
}

impl HttpConnector for FaultyConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let api = request
            .headers()
            .get("x-amz-target")
            .and_then(|t| t.rsplit_once('.'))
            .map(|(_, api)| api.to_owned());
        let Some(api) = api else {
            return self.inner.call(request);
        };
        let point = format!("dynamodb::{api}");
        let Some(kind) = super::hit(&point) else {
            return self.inner.call(request);
        };
        tracing::warn!(point, kind, "failpoint: injecting a DynamoDB fault");
        match answer(&kind, &point) {
            Some(response) => HttpConnectorFuture::ready(Ok(response)),
            // No answer: the attempt's timeout ends it, as with a silent server.
            None => HttpConnectorFuture::new(std::future::pending()),
        }
    }
}

/// The response DynamoDB would send for `kind`; `None` for `timeout`.
fn answer(kind: &str, point: &str) -> Option<HttpResponse> {
    let message = super::injected_message(point, kind);
    let (status, body) = match kind {
        "timeout" => return None,
        "throttle" => (400, error_body("ThrottlingException", &message)),
        "throughput" => (
            400,
            error_body("ProvisionedThroughputExceededException", &message),
        ),
        "server" => (500, error_body("InternalServerError", &message)),
        "unavailable" => (503, error_body("ServiceUnavailable", &message)),
        "conditional" => (400, error_body("ConditionalCheckFailedException", &message)),
        "conflict" => (
            400,
            serde_json::json!({
                "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
                "message": format!("Transaction cancelled, please refer cancellation reasons for specific reasons [TransactionConflict] ({message})"),
                "CancellationReasons": [{"Code": "TransactionConflict", "Message": message}],
            }),
        ),
        // Anything else: a server error that names what was asked for.
        _ => (500, error_body("InternalServerError", &message)),
    };
    let status = StatusCode::try_from(status).expect("a valid HTTP status");
    let mut response = HttpResponse::new(status, SdkBody::from(body.to_string()));
    response
        .headers_mut()
        .insert("content-type", "application/x-amz-json-1.0");
    Some(response)
}

fn error_body(code: &str, message: &str) -> serde_json::Value {
    serde_json::json!({
        "__type": format!("com.amazonaws.dynamodb.v20120810#{code}"),
        "message": message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_answers_as_dynamodb_would() {
        assert!(answer("timeout", "p").is_none());
        for (kind, status) in [
            ("throttle", 400),
            ("throughput", 400),
            ("server", 500),
            ("unavailable", 503),
            ("conditional", 400),
            ("conflict", 400),
        ] {
            let r = answer(kind, "dynamodb::UpdateItem").unwrap();
            assert_eq!(r.status().as_u16(), status, "{kind}");
            let body = std::str::from_utf8(r.body().bytes().unwrap()).unwrap();
            assert!(
                body.contains("failpoint dynamodb::UpdateItem injected"),
                "{body}"
            );
        }
    }
}
