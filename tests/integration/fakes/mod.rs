//! Fake AWS credential sources on loopback, reached by the real aws-config code path through the
//! environment variables the SDKs read: a plain-HTTP server ([`FakeHttp`]) and on top of it
//! [`FakeSts`] (AssumeRole, AssumeRoleWithWebIdentity), [`FakeContainer`] (ECS / EKS Pod
//! Identity), [`FakeImds`] (IMDSv2) and [`FakeSso`] (the SSO portal's GetRoleCredentials).
//!
//! Every source hands out numbered temporary credentials ([`Issued`]) and tells the test through
//! an `on_issue` callback, so the test can make the upstream accept exactly what was issued.
#![allow(dead_code)]

pub mod server;
pub mod sources;

#[allow(unused_imports)]
pub use server::{FakeHttp, FakeReply, FakeRequest};
pub use sources::{FakeContainer, FakeImds, FakeSso, FakeSts, Issued};
