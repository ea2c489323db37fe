//! The gRPC codec: prost, except that a message that fails to decode (a
//! string that is not UTF-8, a truncated field) is answered with
//! INVALID_ARGUMENT naming the field, as every other bad input is, rather
//! than prost's INTERNAL.

use std::marker::PhantomData;

use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic::Status;
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// [`ProstCodec`] with decode errors mapped to INVALID_ARGUMENT.
pub struct StrictCodec<T, U>(ProstCodec<T, U>);

impl<T, U> Default for StrictCodec<T, U> {
    fn default() -> Self {
        Self(ProstCodec::default())
    }
}

impl<T, U> Codec for StrictCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = StrictDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.0.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        StrictDecoder(self.0.decoder(), PhantomData)
    }
}

/// The decoder half of [`StrictCodec`].
pub struct StrictDecoder<U>(ProstDecoder<U>, PhantomData<U>);

impl<U: prost::Message + Default> Decoder for StrictDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.0.decode(buf).map_err(|status| {
            let (field, problem) = field_of_decode_error(status.message());
            crate::api::invalid_argument(vec![(field, problem)])
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}

/// Turns prost's "failed to decode Protobuf message: Inner.a: Outer.b: what"
/// into the field path `b.a` and `what`.
fn field_of_decode_error(message: &str) -> (String, String) {
    let rest = message
        .strip_prefix("failed to decode Protobuf message: ")
        .unwrap_or(message);
    let is_frame = |p: &str| {
        let ident =
            |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        p.split_once('.').is_some_and(|(m, f)| ident(m) && ident(f))
    };
    let parts: Vec<&str> = rest.split(": ").collect();
    let frames = parts.iter().take_while(|p| is_frame(p)).count();
    let what = if frames == parts.len() {
        "malformed message".to_string()
    } else {
        parts[frames..].join(": ")
    };
    let mut fields: Vec<&str> = parts[..frames]
        .iter()
        .filter_map(|p| p.rsplit_once('.').map(|(_, field)| field))
        .collect();
    fields.reverse();
    let field = if fields.is_empty() {
        "(message)".to_string()
    } else {
        fields.join(".")
    };
    (field, what)
}

#[cfg(test)]
mod tests {
    #[test]
    fn nested_field_paths_read_outside_in() {
        let (field, what) = super::field_of_decode_error(
            "failed to decode Protobuf message: RequestContext.user_agent: MintCookieRequest.context: invalid string value: data is not UTF-8 encoded",
        );
        assert_eq!(field, "context.user_agent");
        assert_eq!(what, "invalid string value: data is not UTF-8 encoded");
        let (field, _) =
            super::field_of_decode_error("failed to decode Protobuf message: buffer underflow");
        assert_eq!(field, "(message)");
    }
}
