// Calls to the server half (mlops_nb/lab.py), through Jupyter's own connection settings: the token or cookie and
// the XSRF header go with every request, as for any JupyterLab request.
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export class ApiError extends Error {}

export async function requestAPI<T>(endpoint: string, init: RequestInit = {}, query: Record<string, string> = {}): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const params = new URLSearchParams(query).toString();
  const url = URLExt.join(settings.baseUrl, 'mlops-nb', 'api', endpoint) + (params ? `?${params}` : '');
  const response = await ServerConnection.makeRequest(url, init, settings);
  const text = await response.text();
  const data = text ? JSON.parse(text) : {};
  if (!response.ok) {
    throw new ApiError(data.error ?? data.message ?? `${response.status} ${response.statusText}`);
  }
  return data as T;
}

export function post<T>(endpoint: string, body: unknown): Promise<T> {
  return requestAPI<T>(endpoint, { method: 'POST', body: JSON.stringify(body) });
}
