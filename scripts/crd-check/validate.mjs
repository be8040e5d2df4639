// Validates custom resources against their published schemas, for scripts/check_deployment.py.
// Reads a JSON array of objects on stdin; prints one JSON line per problem
// {"kind","name","path","message"} and exits 1 if there are any, 2 for a kind it has no schema for.
// KEDA's schemas come from @kubernetes-models/keda (generated from KEDA's CRDs).
import { ScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject";
import { ScaledJob } from "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledJob";
import { TriggerAuthentication } from "@kubernetes-models/keda/keda.sh/v1alpha1/TriggerAuthentication";

const models = { "keda.sh/v1alpha1": { ScaledObject, ScaledJob, TriggerAuthentication } };

let input = "";
for await (const chunk of process.stdin) input += chunk;
const objects = JSON.parse(input);
let problems = 0;
let unknown = false;
for (const object of objects) {
  const name = object?.metadata?.name ?? "?";
  const Model = models[object.apiVersion]?.[object.kind];
  if (!Model) {
    console.log(JSON.stringify({ kind: object.kind, name, path: "", message: `no schema for ${object.apiVersion} ${object.kind}` }));
    unknown = true;
    continue;
  }
  try {
    new Model(object).validate();
  } catch (error) {
    for (const e of error.errors ?? [{ instancePath: "", message: String(error.message ?? error) }]) {
      const detail = e.params && Object.keys(e.params).length ? ` ${JSON.stringify(e.params)}` : "";
      console.log(JSON.stringify({ kind: object.kind, name, path: e.instancePath || "(top level)", message: `${e.message}${detail}` }));
      problems++;
    }
  }
}
process.exit(unknown ? 2 : problems ? 1 : 0);
