// SSM Parameter Store names, as the config accepts them: a parameter's name
// or ARN, a path (parameterPath), a label. Each `...Reason` returns why a value
// is not one SSM accepts (a message in the shape of config/messages.ts), or
// undefined; `checked` makes a schema field of one, with the same rule as a
// JSON Schema pattern and length for editors (all but the level count and,
// for names, the length with the ARN). The limits: docs/aws.md, "Parameter
// names".
import type * as z from 'zod';
import { text } from './fields.ts';
import { show } from './messages.ts';

/** The longest parameter name SSM accepts, counting the ARN before the name (docs/aws.md, "Parameter names"). */
export const PARAMETER_NAME_MAX = 1011;
/** GetParametersByPath's longest Path. */
export const PARAMETER_PATH_MAX = 2048;
const PARAMETER_LEVELS_MAX = 15;
const PARAMETER_ARN = /^arn:aws[-a-z]*:ssm:[a-z]{2}(?:-[a-z]+)+-\d+:\d{12}:parameter(\/.*)$/;
const PARAMETER_CHARS = /^[A-Za-z0-9_./-]+$/;
/**
 * Parameter Store refuses to create a name whose first level starts with "aws"
 * or "ssm", in any case (`awsTestParameter`, `SSM-testparameter`,
 * `/aws/testparam1`), so no such parameter of an account exists. AWS's own
 * parameters are the exceptions a reader may name: public parameters under
 * `/aws/service/` and Secrets Manager references under
 * `/aws/reference/secretsmanager/` (a name, not a path). docs/aws.md, "Parameter names".
 */
const RESERVED_FIRST_LEVEL = /^\/?(?:aws|ssm)/i;
const AWS_OWNED_NAME = /^\/aws\/(?:service|reference\/secretsmanager)\/./;
const AWS_OWNED_PATH = /^\/aws\/service(?:\/|$)/;

/** Why `v` is not a parameter name (or hierarchy) SSM accepts, or undefined. `path`: a parameterPath. */
function hierarchyReason(v: string, path: boolean): string | undefined {
  if (!PARAMETER_CHARS.test(v)) return `${show(v)} may contain only letters, digits, "_", ".", "-" and "/"`;
  if (v.includes('/') && !v.startsWith('/')) return `${show(v)}: a name with levels ("/") must start with "/" (e.g. "/${v}")`;
  const levels = v.split('/').slice(1);
  if (path && levels.at(-1) === '') levels.pop();
  if (v !== '/' && levels.some((l) => l === '')) return `${show(v)} has an empty level ("//"${path ? '' : ' or a trailing "/"'})`;
  if (levels.length > PARAMETER_LEVELS_MAX) return `${show(v)} has ${levels.length} levels; SSM allows at most ${PARAMETER_LEVELS_MAX}`;
  if (RESERVED_FIRST_LEVEL.test(v) && !(path ? AWS_OWNED_PATH : AWS_OWNED_NAME).test(v)) {
    const owned = path ? 'public parameters are read under "/aws/service/"' : 'AWS\'s public parameters ("/aws/service/...") and Secrets Manager references ("/aws/reference/secretsmanager/...") can be read';
    return `${show(v)}: Parameter Store reserves names whose first level starts with "aws" or "ssm" (in any case), so no such parameter can exist in an account (${owned}); rename the parameter`;
  }
  return undefined;
}

/** Why `v` is not a parameter name or ARN, or undefined. */
export function parameterNameReason(v: string): string | undefined {
  if (v.startsWith('arn:')) {
    const m = PARAMETER_ARN.exec(v);
    if (!m?.[1]) return `${show(v)} is not an SSM parameter ARN (arn:aws:ssm:REGION:ACCOUNT:parameter/NAME)`;
    if (v.length > PARAMETER_NAME_MAX) return `is ${v.length} characters; a parameter ARN has at most ${PARAMETER_NAME_MAX}`;
    // arn:…:parameter/name is the name "name"; arn:…:parameter/a/b is "/a/b".
    const name = m[1].slice(1).includes('/') ? m[1] : m[1].slice(1);
    return name === '' ? `${show(v)} names no parameter after "parameter/"` : hierarchyReason(name, false);
  }
  if (v.length > PARAMETER_NAME_MAX) return `is ${v.length} characters; a parameter name has at most ${PARAMETER_NAME_MAX} (with the ARN before it)`;
  if (v === '/') return '"/" is a path, not a parameter; use parameterPath: "/" for every parameter';
  return hierarchyReason(v, false);
}

/** Why `v` is not a parameter path, or undefined. */
export function parameterPathReason(v: string): string | undefined {
  if (v.startsWith('arn:')) return `${show(v)}: a path is not an ARN; give the hierarchy (e.g. "/prod/app/")`;
  if (!v.startsWith('/')) return `${show(v)}: a path starts with "/" (e.g. "/${v}")`;
  if (v.length > PARAMETER_PATH_MAX) return `is ${v.length} characters; a path has at most ${PARAMETER_PATH_MAX}`;
  return hierarchyReason(v, true);
}

/** Why `v` is not a parameter label, or undefined. */
export function parameterLabelReason(v: string): string | undefined {
  if (v.length > 100) return `is ${v.length} characters; a label has at most 100`;
  if (!/^[A-Za-z0-9_.-]+$/.test(v)) return `${show(v)} may contain only letters, digits, ".", "-" and "_"`;
  if (/^[0-9]/.test(v)) return `${show(v)} starts with a digit, which no label may${/^[0-9]+$/.test(v) ? ` (for a version number use version: ${v})` : ""}`;
  if (/^(?:aws|ssm)/i.test(v)) return `${show(v)}: a label may not start with "aws" or "ssm"`;
  return undefined;
}

// The same rules as JSON Schema patterns for editors (all but the level count,
// for names the length with the ARN, and the case of the "/aws/service/" and
// "/aws/reference/secretsmanager/" exceptions to the reserved prefixes, which
// the patterns take in any case).
const RESERVED_JSON = '(?!/?(?:[Aa][Ww][Ss]|[Ss][Ss][Mm]))';
const AWS_OWNED_NAME_JSON = '/[Aa][Ww][Ss]/(?:[Ss][Ee][Rr][Vv][Ii][Cc][Ee]|[Rr][Ee][Ff][Ee][Rr][Ee][Nn][Cc][Ee]/[Ss][Ee][Cc][Rr][Ee][Tt][Ss][Mm][Aa][Nn][Aa][Gg][Ee][Rr])(?:/[A-Za-z0-9_.-]+)+';
export const PARAMETER_NAME_JSON = `^(?:arn:aws[-a-z]*:ssm:[a-z]{2}(?:-[a-z]+)+-\\d+:\\d{12}:parameter/${RESERVED_JSON}[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*|${RESERVED_JSON}[A-Za-z0-9_.-]+|${RESERVED_JSON}(?:/[A-Za-z0-9_.-]+)+|${AWS_OWNED_NAME_JSON})$`;
export const PARAMETER_PATH_JSON = `^(?:${RESERVED_JSON}/(?:[A-Za-z0-9_.-]+/)*[A-Za-z0-9_.-]*|/[Aa][Ww][Ss]/[Ss][Ee][Rr][Vv][Ii][Cc][Ee](?:/[A-Za-z0-9_.-]*)*)$`;
export const PARAMETER_LABEL_JSON = '^(?![0-9]|[Aa][Ww][Ss]|[Ss][Ss][Mm])[A-Za-z0-9_.-]{1,100}$';

export function checked(what: string, reason: (v: string) => string | undefined, json: { pattern: string; maxLength: number }): z.ZodString {
  return text(what)
    .refine((v) => reason(v) === undefined, { error: (iss) => reason(String(iss.input)) })
    .meta(json);
}
