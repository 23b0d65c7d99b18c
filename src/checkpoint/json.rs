//! A strict reader of the JSON objects in a checkpoint's metadata: every field must be present
//! with the right type, and a field this version does not know is an error, so damage to the
//! metadata never passes as a default. Every error names the object and the field.

use serde_json::{Map, Value};

use crate::error::{Error, Result};

pub fn corrupt(msg: String) -> Error {
    Error::Corrupt(msg)
}

/// Parses one metadata value as JSON.
pub fn parse(text: &str, what: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| corrupt(format!("metadata {what}: invalid JSON: {e}")))
}

/// The fields of one JSON object, taken one by one.
pub struct Fields<'a> {
    obj: &'a Map<String, Value>,
    what: String,
    taken: Vec<&'static str>,
}

impl<'a> Fields<'a> {
    pub fn new(v: &'a Value, what: impl Into<String>) -> Result<Fields<'a>> {
        let what = what.into();
        match v.as_object() {
            Some(obj) => Ok(Fields {
                obj,
                what,
                taken: Vec::new(),
            }),
            None => Err(corrupt(format!("{what}: expected a JSON object"))),
        }
    }

    /// The raw value of `key`, which must be present.
    pub fn value(&mut self, key: &'static str) -> Result<&'a Value> {
        self.taken.push(key);
        self.obj
            .get(key)
            .ok_or_else(|| corrupt(format!("{}.{key}: missing", self.what)))
    }

    fn bad(&self, key: &str, want: &str) -> Error {
        corrupt(format!("{}.{key}: expected {want}", self.what))
    }

    pub fn u64(&mut self, key: &'static str) -> Result<u64> {
        let v = self.value(key)?;
        v.as_u64()
            .ok_or_else(|| self.bad(key, "an unsigned integer"))
    }

    pub fn u32(&mut self, key: &'static str) -> Result<u32> {
        let v = self.u64(key)?;
        u32::try_from(v).map_err(|_| self.bad(key, "an integer below 2^32"))
    }

    pub fn i32(&mut self, key: &'static str) -> Result<i32> {
        let v = self.value(key)?;
        v.as_i64()
            .and_then(|x| i32::try_from(x).ok())
            .ok_or_else(|| self.bad(key, "a 32-bit integer"))
    }

    pub fn f64(&mut self, key: &'static str) -> Result<f64> {
        let v = self.value(key)?;
        v.as_f64().ok_or_else(|| self.bad(key, "a number"))
    }

    pub fn bool(&mut self, key: &'static str) -> Result<bool> {
        let v = self.value(key)?;
        v.as_bool().ok_or_else(|| self.bad(key, "true or false"))
    }

    pub fn str(&mut self, key: &'static str) -> Result<&'a str> {
        let v = self.value(key)?;
        v.as_str().ok_or_else(|| self.bad(key, "a string"))
    }

    /// `null` (not set) or a value read by `read`.
    pub fn opt<T>(
        &mut self,
        key: &'static str,
        read: impl FnOnce(&mut Self, &'static str) -> Result<T>,
    ) -> Result<Option<T>> {
        if self.value(key)?.is_null() {
            return Ok(None);
        }
        read(self, key).map(Some)
    }

    /// Fails on any field that was not taken.
    pub fn finish(self) -> Result<()> {
        match self.obj.keys().find(|k| !self.taken.contains(&k.as_str())) {
            Some(k) => Err(corrupt(format!("{}.{k}: unknown field", self.what))),
            None => Ok(()),
        }
    }
}
