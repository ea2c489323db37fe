'use strict';

// The service definition, loaded once from the .proto with
// @grpc/proto-loader: field names as in the .proto, 64-bit numbers as
// numbers, enums as their names, defaults filled in. The
// google.protobuf.*Value wrappers are unwrapped on the way in and out, so
// callers pass and read plain numbers and booleans (`null` for unset).
//
// The .proto is the repository's own (proto/ two folders up) when the
// package is used from a checkout; packing the package (`npm pack`, and
// `npm install --install-links`, which packs it) first copies it in
// (scripts/proto.js, the `prepare` script), so an installed copy carries it.

const fs = require('node:fs');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const FILE = 'sessionbridge/v1/sessionbridge.proto';
const PACKAGE = 'sessionbridge.v1';
const SERVICE = `${PACKAGE}.SessionBridgeService`;

/**
 * Folders that may hold the .proto: the repository's proto/ when this is
 * the repository's own clients/node folder (npm's default link install),
 * else the copy `npm pack` or `npm install --install-links` made.
 */
function protoDirs() {
  const root = path.join(__dirname, '..');
  const repo = path.join(root, '..', '..');
  const copy = path.join(root, 'proto');
  let inRepo = false;
  try {
    inRepo = fs.realpathSync(path.join(repo, 'clients', 'node')) === fs.realpathSync(root);
  } catch {
    // not in a repository
  }
  return inRepo ? [path.join(repo, 'proto'), copy] : [copy];
}

function findProto() {
  for (const dir of protoDirs()) {
    if (fs.existsSync(path.join(dir, FILE))) return dir;
  }
  throw new Error(
    `sessionbridge: ${FILE} not found in ${protoDirs().join(' or ')}; ` +
      'install the package from the repository folder or from a tarball made by `npm pack`',
  );
}

const LOADER_OPTIONS = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: false,
};

const WRAPPERS = new Set(
  ['Double', 'Float', 'Int64', 'UInt64', 'Int32', 'UInt32', 'Bool', 'String', 'Bytes'].map(
    (t) => `google.protobuf.${t}Value`,
  ),
);

/**
 * For each message of our package: its wrapper fields, and its fields that
 * are messages of our package (to walk into). Read from the descriptors
 * proto-loader keeps, so a field added to the .proto needs no change here.
 */
function fieldPlan(definition) {
  const plan = new Map();
  for (const [name, entry] of Object.entries(definition)) {
    if (!name.startsWith(`${PACKAGE}.`) || !entry || entry.format !== 'Protocol Buffer 3 DescriptorProto') {
      continue;
    }
    const wrappers = [];
    const nested = [];
    for (const f of entry.type.field) {
      if (f.type !== 'TYPE_MESSAGE') continue;
      const repeated = f.label === 'LABEL_REPEATED';
      const typeName = f.typeName.replace(/^\./, '');
      if (WRAPPERS.has(typeName)) wrappers.push({ name: f.name, repeated });
      else {
        // proto-loader names types of the same package without it.
        const type = [typeName, `${PACKAGE}.${typeName}`].find((t) => t.startsWith(`${PACKAGE}.`) && definition[t]);
        if (type) nested.push({ name: f.name, repeated, type });
      }
    }
    plan.set(name, { wrappers, nested });
  }
  return plan;
}

function transform(plan, type, message, wrap) {
  const p = plan.get(type);
  if (!p || message === null || typeof message !== 'object') return message;
  const out = { ...message };
  for (const { name, repeated } of p.wrappers) {
    if (!(name in out)) continue;
    const v = out[name];
    if (wrap) {
      // A plain value becomes `{ value }`; undefined/null stays unset; an
      // object that already looks wrapped is passed on.
      if (v === undefined || v === null) delete out[name];
      else if (typeof v !== 'object' || Buffer.isBuffer(v)) out[name] = { value: v };
    } else if (repeated) {
      out[name] = Array.isArray(v) ? v.map((x) => (x && typeof x === 'object' ? x.value : x)) : v;
    } else {
      out[name] = v && typeof v === 'object' && 'value' in v ? v.value : null;
    }
  }
  for (const { name, repeated, type: t } of p.nested) {
    const v = out[name];
    if (v === undefined || v === null) continue;
    out[name] = repeated && Array.isArray(v) ? v.map((x) => transform(plan, t, x, wrap)) : transform(plan, t, v, wrap);
  }
  return out;
}

let loaded;

/** The service's client constructor and method list, loaded once. */
function load() {
  if (loaded) return loaded;
  const dir = findProto();
  const definition = protoLoader.loadSync(FILE, { ...LOADER_OPTIONS, includeDirs: [dir] });
  const plan = fieldPlan(definition);
  const service = definition[SERVICE];
  const methods = {};
  for (const [name, m] of Object.entries(service)) {
    const req = m.requestType.type.name;
    const res = m.responseType.type.name;
    const reqType = `${PACKAGE}.${req}`;
    const resType = `${PACKAGE}.${res}`;
    methods[name] = {
      ...m,
      requestSerialize: (value) => m.requestSerialize(transform(plan, reqType, value, true)),
      responseDeserialize: (buf) => transform(plan, resType, m.responseDeserialize(buf), false),
    };
  }
  const Client = grpc.makeGenericClientConstructor(methods, 'SessionBridgeService');
  loaded = { Client, methods: Object.keys(methods), protoDir: dir };
  return loaded;
}

module.exports = { load, FILE };
