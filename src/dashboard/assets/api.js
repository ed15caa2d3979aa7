// The page's only way out: same-origin calls to the public API, with the pasted key as the bearer
// token. A customer key therefore sees exactly what the API lets it read.

const KEY = "carbon-ledger.key";

export const savedKey = () => sessionStorage.getItem(KEY);
export const saveKey = (key) => sessionStorage.setItem(KEY, key);
export const forgetKey = () => sessionStorage.removeItem(KEY);

/** An answer that was not 2xx, with the problem+json detail when the server gave one. */
export class ApiProblem extends Error {
  constructor(status, problem) {
    super(problem?.detail || `the server answered ${status}`);
    this.status = status;
    this.code = problem?.code;
  }
}

async function call(path, { key = savedKey(), accept = "application/json" } = {}) {
  const response = await fetch(path, {
    headers: { Authorization: `Bearer ${key}`, Accept: accept },
    credentials: "omit",
    cache: "no-store",
  });
  if (!response.ok) {
    let problem = null;
    try {
      problem = await response.json();
    } catch {
      // not problem+json: the status says enough
    }
    throw new ApiProblem(response.status, problem);
  }
  return response;
}

export const json = async (path, options) => (await call(path, options)).json();
export const blob = async (path, options) => (await call(path, options)).blob();

/** Saves the answer at `path` as a file named `name`, as a download the browser shows. */
export async function download(path, name) {
  const data = await blob(path);
  const link = document.createElement("a");
  link.href = URL.createObjectURL(data);
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}

/** The query string of a report request; absent and empty values are left out. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(name, value);
  }
  return search.toString();
}

/** The footprint path for a customer, or everyone's (admin) when `customer` is empty. */
export function footprintPath(customer, params) {
  const base = customer ? `/v1/customers/${encodeURIComponent(customer)}/footprint` : "/v1/footprint";
  return `${base}?${query(params)}`;
}
