// Drive npm `kling-api` (its KlingAPI class) through the fake Kling API, with Node.
//
// argv[2]: JSON {"package_dir", "base_url", "access_key", "secret_key", "out_dir",
//                "jobs": [{"id", "kind", "params"}]}.
// Prints one JSON line per job: its id, the task id, the final task, and the files the client
// saved (it downloads results itself). The only setting is `baseUrl`, a constructor option;
// the package is imported from where .ci/run installed it, through its package.json "main".
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const config = JSON.parse(process.argv[2]);
const manifest = JSON.parse(readFileSync(join(config.package_dir, 'package.json'), 'utf8'));
const { KlingAPI } = await import(pathToFileURL(join(config.package_dir, manifest.main)).href);

const api = new KlingAPI({
  accessKey: config.access_key,
  secretKey: config.secret_key,
  baseUrl: config.base_url, // the one-line setting: where the API is
});

// kind -> [create, query, wait, save]
const KINDS = {
  text2video: ['textToVideo', 'queryTextToVideoTask', 'waitForVideoResult', 'saveVideoResult'],
  image2video: ['imageToVideo', 'queryImageToVideoTask', 'waitForVideoResult', 'saveVideoResult'],
  image: ['generateImage', 'queryImageGenTask', 'waitForImageResult', 'saveImageResult'],
  omni: ['omniVideo', 'queryOmniVideoTask', 'waitForVideoResult', 'saveVideoResult'],
};

for (const job of config.jobs) {
  const [create, query, wait, save] = KINDS[job.kind];
  const line = { id: job.id };
  try {
    const created = await api[create](job.params);
    line.task_id = created.data.task_id;
    const done = await api[wait](line.task_id, api[query].bind(api), {
      interval: 50,
      timeout: 20000,
      showSpinner: false,
    });
    line.task = done.data;
    if (config.out_dir) {
      line.saved = await api[save](done, join(config.out_dir, job.id), job.id);
    }
  } catch (error) {
    line.error = `${error.name}: ${error.message}`;
  }
  console.log(JSON.stringify(line));
}
