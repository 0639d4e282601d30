//! Bearer-token authentication and role checks, as one tower layer in front
//! of every gRPC service.
//!
//! tonic interceptors cannot see which method is called, so the check lives
//! here, on the HTTP request: the path (`/rollcall.v1.AlertService/Create`)
//! is mapped to the role it needs by [`required_role`], which **denies by
//! default** — a method missing from the table is refused, and a unit test
//! fails if any method in the protos lacks an entry. Tokens are stored as
//! SHA-256 hashes and compared in constant time. The caller's name and role
//! travel to the service as a [`Caller`] request extension, for the audit log.

use std::sync::Arc;
use std::task::{Context, Poll};

use sha2::{Digest, Sha256};
use tonic::codegen::http;

use crate::config::{GrpcConfig, Role};

/// Who is calling; inserted into every authorised request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

/// The access a path needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Health and reflection: anyone (systemd, load balancers, grpcurl).
    Public,
    Role(Role),
}

/// The role each method needs; `None` (unknown method) is refused.
pub fn required_role(path: &str) -> Option<Access> {
    use Role::*;
    if path.starts_with("/grpc.health.v1.Health/")
        || path.starts_with("/grpc.reflection.v1.ServerReflection/")
        || path.starts_with("/grpc.reflection.v1alpha.ServerReflection/")
    {
        return Some(Access::Public);
    }
    let (service, method) = path.strip_prefix("/rollcall.v1.")?.split_once('/')?;
    let role = match (service, method) {
        ("StationService", "GetStatus") => Viewer,
        ("StationService", "SetPatch") => Operator,
        ("EventService", "Subscribe") => Viewer,
        ("AudioService", "Monitor") => Viewer,
        ("AudioService", "Talk") => Operator,
        ("RecordingService", "Search" | "Fetch") => Viewer,
        ("RollCallService", "ListSchedules" | "ListRuns" | "GetRun" | "WatchRun") => Viewer,
        ("RollCallService", "RunReport" | "CompanyReport") => Viewer,
        ("RollCallService", "StartRun") => Operator,
        ("RollCallService", "UpsertSchedule" | "DeleteSchedule") => Admin,
        ("AlertService", "List" | "Get") => Viewer,
        ("AlertService", "Create" | "Acknowledge") => Operator,
        ("RosterService", "List") => Viewer,
        ("RosterService", "UpsertCompany" | "DeleteCompany" | "UpsertGuard" | "DeleteGuard") => {
            Admin
        }
        ("RosterService", "UpsertGroup" | "DeleteGroup") => Admin,
        _ => return None,
    };
    Some(Access::Role(role))
}

struct Token {
    name: String,
    role: Role,
    hash: [u8; 32],
}

/// The configured tokens.
#[derive(Clone)]
pub struct AuthLayer {
    tokens: Arc<Vec<Token>>,
    require: bool,
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl AuthLayer {
    pub fn new(cfg: &GrpcConfig) -> AuthLayer {
        let tokens = cfg
            .tokens
            .iter()
            .filter_map(|t| {
                let bytes = hex::decode(&t.sha256).ok()?;
                Some(Token {
                    name: t.name.clone(),
                    role: t.role,
                    hash: bytes.try_into().ok()?,
                })
            })
            .collect();
        AuthLayer {
            tokens: Arc::new(tokens),
            require: cfg.require_auth,
            metrics: None,
        }
    }

    /// Counts every call by method and status code.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> AuthLayer {
        self.metrics = Some(metrics);
        self
    }

    /// Decides a request from its path and `authorization` header value.
    pub fn check(
        &self,
        path: &str,
        authorization: Option<&str>,
    ) -> Result<Option<Caller>, tonic::Status> {
        let Some(access) = required_role(path) else {
            return Err(tonic::Status::permission_denied(format!(
                "{path} is not an allowed method"
            )));
        };
        let role = match access {
            Access::Public => return Ok(None),
            Access::Role(r) => r,
        };
        if !self.require {
            return Ok(Some(Caller {
                name: "anonymous".into(),
                role: Role::Admin,
            }));
        }
        let Some(header) = authorization else {
            return Err(tonic::Status::unauthenticated(
                "missing token: send `authorization: Bearer <token>` metadata",
            ));
        };
        let Some(secret) = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
        else {
            return Err(tonic::Status::unauthenticated(
                "authorization metadata must be `Bearer <token>`",
            ));
        };
        let hash: [u8; 32] = Sha256::digest(secret.trim().as_bytes()).into();
        // Check every token without an early exit, so timing does not tell
        // which hash prefix matched.
        let mut found: Option<&Token> = None;
        for t in self.tokens.iter() {
            if constant_time_eq(&t.hash, &hash) {
                found = Some(t);
            }
        }
        let Some(token) = found else {
            return Err(tonic::Status::unauthenticated("unknown token"));
        };
        if token.role < role {
            return Err(tonic::Status::permission_denied(format!(
                "{path} needs the {} role; token \"{}\" has {}",
                role.as_str(),
                token.name,
                token.role.as_str()
            )));
        }
        Ok(Some(Caller {
            name: token.name.clone(),
            role: token.role,
        }))
    }
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl<S> tower_layer::Layer<S> for AuthLayer {
    type Service = Auth<S>;
    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    layer: AuthLayer,
}

type BoxFut<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, ReqBody, ResBody> tower_service::Service<http::Request<ReqBody>> for Auth<S>
where
    S: tower_service::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFut<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<ReqBody>) -> Self::Future {
        let auth = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let path = req.uri().path().to_owned();
        let metrics = self.layer.metrics.clone();
        match self.layer.check(&path, auth) {
            Ok(caller) => {
                if let Some(c) = caller {
                    req.extensions_mut().insert(c);
                }
                // The ready service handles this call; a clone takes its place.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                Box::pin(async move {
                    let resp = inner.call(req).await?;
                    if let Some(m) = metrics {
                        // Errors answered at once carry grpc-status in the
                        // headers; streams report theirs later, counted as OK.
                        let code = resp
                            .headers()
                            .get("grpc-status")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.parse::<i32>().ok())
                            .map(tonic::Code::from)
                            .unwrap_or(tonic::Code::Ok);
                        m.grpc_request(&path, &format!("{code:?}"));
                    }
                    Ok(resp)
                })
            }
            Err(status) => {
                tracing::info!(path = %path, code = ?status.code(), "gRPC call refused");
                if let Some(m) = metrics {
                    m.grpc_request(&path, &format!("{:?}", status.code()));
                }
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

/// The caller of a request (set by [`AuthLayer`]); "unknown" for public paths.
pub fn caller<T>(req: &tonic::Request<T>) -> Caller {
    req.extensions().get::<Caller>().cloned().unwrap_or(Caller {
        name: "unknown".into(),
        role: Role::Viewer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TokenConfig;
    use prost::Message;

    fn layer() -> AuthLayer {
        let tok = |name: &str, role, secret: &str| TokenConfig {
            name: name.into(),
            role,
            sha256: hex::encode(Sha256::digest(secret.as_bytes())),
        };
        AuthLayer::new(&GrpcConfig {
            tokens: vec![
                tok("wall", Role::Viewer, "v-secret"),
                tok("desk", Role::Operator, "o-secret"),
                tok("chief", Role::Admin, "a-secret"),
            ],
            ..GrpcConfig::default()
        })
    }

    #[test]
    fn every_method_in_the_protos_has_a_role() {
        let fds =
            prost_types::FileDescriptorSet::decode(rollcall_proto::FILE_DESCRIPTOR_SET).unwrap();
        let mut n = 0;
        for file in &fds.file {
            for svc in &file.service {
                for m in &svc.method {
                    let path = format!("/{}.{}/{}", file.package(), svc.name(), m.name());
                    assert!(
                        matches!(required_role(&path), Some(Access::Role(_))),
                        "{path} has no role mapping"
                    );
                    n += 1;
                }
            }
        }
        assert!(n >= 5, "found only {n} methods");
    }

    #[test]
    fn roles_are_enforced() {
        let l = layer();
        let talk = "/rollcall.v1.AudioService/Talk";
        let status = "/rollcall.v1.StationService/GetStatus";
        assert_eq!(
            l.check(status, None).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            l.check(status, Some("Bearer nope")).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            l.check(status, Some("Bearer v-secret"))
                .unwrap()
                .unwrap()
                .name,
            "wall"
        );
        let denied = l.check(talk, Some("Bearer v-secret")).unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        assert!(
            denied.message().contains("needs the operator role"),
            "{}",
            denied.message()
        );
        assert_eq!(
            l.check(talk, Some("Bearer o-secret"))
                .unwrap()
                .unwrap()
                .role,
            Role::Operator
        );
        assert_eq!(
            l.check(
                "/rollcall.v1.RosterService/UpsertGuard",
                Some("Bearer o-secret")
            )
            .unwrap_err()
            .code(),
            tonic::Code::PermissionDenied
        );
        assert!(l
            .check(
                "/rollcall.v1.RosterService/UpsertGuard",
                Some("Bearer a-secret")
            )
            .is_ok());
        // Unknown methods are denied even to admins.
        assert_eq!(
            l.check("/rollcall.v1.Secret/Backdoor", Some("Bearer a-secret"))
                .unwrap_err()
                .code(),
            tonic::Code::PermissionDenied
        );
        // Health is public.
        assert_eq!(l.check("/grpc.health.v1.Health/Check", None).unwrap(), None);
    }
}
