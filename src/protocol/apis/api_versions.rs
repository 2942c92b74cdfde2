//! ApiVersions (key 0): which APIs and versions the broker serves. A client sends it first.

use rkyv::{Archive, Deserialize, Serialize};

use crate::protocol::{ApiKey, ErrorCode, Request};

#[derive(Archive, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct ApiVersionsRequest {
    /// For the broker's logs, e.g. "ringmq-rust".
    pub client_software_name: String,
    pub client_software_version: String,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct ApiVersionsResponse {
    pub error_code: u16,
    pub api_keys: Vec<ApiVersionRange>,
}

/// The versions `min_version..=max_version` of `api_key` are served.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug), compare(PartialEq))]
pub struct ApiVersionRange {
    pub api_key: u16,
    pub min_version: u16,
    pub max_version: u16,
}

impl ApiVersionsResponse {
    /// The response this build gives: every API in [`ApiKey::ALL`] with its version range.
    pub fn supported() -> ApiVersionsResponse {
        ApiVersionsResponse {
            error_code: ErrorCode::None.as_u16(),
            api_keys: ApiKey::ALL
                .iter()
                .map(|key| {
                    let range = key.supported_versions();
                    ApiVersionRange { api_key: key.as_u16(), min_version: range.min, max_version: range.max }
                })
                .collect(),
        }
    }
}

impl Request for ApiVersionsRequest {
    const API_KEY: ApiKey = ApiKey::ApiVersions;
    type Response = ApiVersionsResponse;
}

crate::protocol::codec::envelopes!(ApiVersionsRequest, ApiVersionsResponse);
