// Poolkeeper in Azure: a Flex Consumption Function App (Python 3.11) with a user-assigned
// managed identity, its Storage account (identity-based, no shared keys), Application Insights
// (Entra ingestion) and a Key Vault (RBAC) for the secrets it reads. The identity may do exactly
// what scale, drain, patch, repair and image jobs call on each pool's scale set (custom roles
// assigned at the scale set; run command only with patch or image jobs on), read those scale
// sets' metrics, join what their models reference, snapshot a donor's disk in their resource
// groups and keep prototype images in each pool's gallery resource group; nothing else. Each
// pool gets metric alert rules for its P1/P2 conditions that call POST /api/alerts
// (docs/alerts.md). Walkthrough: docs/deploy.md.

targetScope = 'resourceGroup'

@description('Azure region for every resource.')
param location string = resourceGroup().location

@description('Base name for the resources (lowercase letters and digits).')
@minLength(3)
@maxLength(16)
param name string = 'poolkeeper'

// Base64, because azd pastes an environment value into main.parameters.json as it is: the
// pools' quotes and newlines would end the JSON string they are pasted into.
@description('The pools Poolkeeper manages (docs/configuration.md), the JSON file base64-encoded: the allow-list. The app receives the decoded text unchanged as POOLKEEPER_POOLS.')
param poolsB64 string

@description('Comma-separated <subscription-id>/<resource-group> pairs where the scale sets\' models reference subnets, load balancers or network security groups outside the pools\' own resource groups; empty: none.')
param networkResourceGroups string = ''

@description('Comma-separated resource ids of the user-assigned identities the pools\' scale sets carry (e.g. the kubelet identity): Poolkeeper may assign these and no other; every write to a scale set that carries one needs it. Empty: none (GET /api/preflight names the ones missing).')
param scaleSetIdentities string = ''

@description('Grant run command on the pools\' scale sets for patch jobs (their node check and installs, docs/patching.md); false: patch jobs fail on the check, and only image jobs, if on, get run command.')
param patchJobs bool = true

@description('Grant what image jobs need in each pool\'s gallery resource group (its image.gallery\'s, else its scale set\'s); docs/images.md.')
param imageJobs bool = true

@description('API server URL for the single-cluster setting POOLKEEPER_KUBE_SERVER (an Entra ID token of the identity); empty when the pools\' clusters are described otherwise (docs/drain.md).')
param kubeServer string = ''

@description('observe or act, passed to the app as POOLKEEPER_MODE: provision in observe first, check GET /api/preflight, then act (docs/deploy.md).')
@allowed([ 'observe', 'act' ])
param mode string = 'observe'

@description('Where node utilisation comes from (POOLKEEPER_USAGE_SOURCE, docs/capacity.md).')
@allowed([ 'platform', 'container-insights' ])
param usageSource string = 'platform'

@description('Region of the pools\' scale sets: the metrics endpoint answers for its own region only. Empty: the app\'s region.')
param scaleSetRegion string = ''

@description('Resource id of the Log Analytics workspace Container Insights writes to; required with usageSource container-insights (the identity may read it).')
param logWorkspaceResourceId string = ''

@description('Secret that signs POST /api/alerts (POOLKEEPER_ALERT_SECRET); empty: no signature asked. Azure Monitor cannot sign: leave it empty with deployAlertRules.')
@secure()
param alertSecret string = ''

@description('URL that notifications are POSTed to (POOLKEEPER_NOTIFY_WEBHOOK); empty: the notifications queue only.')
@secure()
param notifyWebhook string = ''

@description('Object id of the person or pipeline that deploys (azd: AZURE_PRINCIPAL_ID): may set the vault\'s secrets, e.g. the clusters\' tokens. Empty: nobody.')
param secretsOfficerId string = ''

@description('Subnet for VNet integration (delegated to Microsoft.App/environments), to reach a private API server; empty: none.')
param subnetId string = ''

@description('Schedule of the reconcile timer (6-field NCRONTAB, UTC).')
@description('Client id of the Entra app registration people sign in to (app roles in infra/app-roles.json; docs/deploy.md, "Security model"). Empty: no sign-in is configured, and every route but health and alerts answers 401.')
param signInClientId string = ''

@description('Tenant of that app registration.')
param signInTenantId string = tenant().tenantId

@description('Object id of that app registration: the action group asks Entra ID for a token for it (a Secure Webhook). Empty with no sign-in: then no alert rules are deployed, as no alert could be accepted.')
param signInAppObjectId string = ''

param reconcileSchedule string = '0 */5 * * * *'

@description('Deploy the P1/P2 metric alert rules of every pool and their action group (docs/alerts.md).')
param deployAlertRules bool = true

var suffix = uniqueString(resourceGroup().id, name)
var storageName = take('${name}${suffix}', 24)
var vaultName = take('kv${name}${suffix}', 24)
var deploymentContainer = 'app-package'
var alertSecretName = 'poolkeeper-alert-secret'
var notifyWebhookName = 'poolkeeper-notify-webhook'
var metricsRegion = empty(scaleSetRegion) ? location : scaleSetRegion
var usesContainerInsights = usageSource == 'container-insights'

// Built-in roles.
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'
var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'
var keyVaultSecretsOfficer = 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: '${name}-id'
  location: location
}

var openStorage = { defaultAction: 'Allow', bypass: 'AzureServices' }
var subnetOnlyStorage = {
  defaultAction: 'Deny'
  bypass: 'AzureServices'
  virtualNetworkRules: [ { id: subnetId, action: 'Allow' } ]
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35:With subnetId the account denies every network but the app's subnet; without VNet integration the app reaches it over the public endpoint with Entra ID only (shared keys off)
  // checkov:skip=CKV_AZURE_206:LRS works in every region; what matters is rebuilt or re-read: counts come from Azure on every reconcile, and lost jobs are resubmitted (docs/deploy.md)
  // checkov:skip=CKV_AZURE_43:The name is computed (take(name + uniqueString, 24)); the name parameter allows 3-16 lowercase letters and digits, so the result is a valid account name
  name: storageName
  location: location
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    // With VNet integration the app comes from its subnet (which needs the Microsoft.Storage
    // service endpoint): nothing else reaches the account. Without it, Entra ID is the guard.
    networkAcls: empty(subnetId) ? openStorage : subnetOnlyStorage
  }
}

// The app's package (and the host's leases and timer status) can be brought back: blobs are
// versioned and deleted ones kept 7 days; old versions go after 7 days (the timers rewrite their
// status blobs often).
resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    isVersioningEnabled: true
    deleteRetentionPolicy: { enabled: true, days: 7 }
    containerDeleteRetentionPolicy: { enabled: true, days: 7 }
  }
}

resource versionsExpire 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'old-versions'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: { blobTypes: [ 'blockBlob' ] }
            actions: { version: { delete: { daysAfterCreationGreaterThan: 7 } } }
          }
        }
      ]
    }
  }
}

resource packages 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainer
}

// Built-in roles the app needs on its own storage account (identity-based AzureWebJobsStorage).
var storageRoles = [
  'b7e6dc6d-f1e8-4753-8033-0f276bb0955b' // Storage Blob Data Owner (leases, timer status)
  '974c5e8b-45b9-4653-ba55-5f855dd0fb88' // Storage Queue Data Contributor (jobs)
  '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3' // Storage Table Data Contributor (ledger, status)
]

resource storageAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in storageRoles: {
  name: guid(storage.id, identity.id, role)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}]

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: '${name}-logs'
  location: location
  properties: {
    sku: { name: 'PerGB2018' }
    retentionInDays: 30
  }
}

resource insights 'Microsoft.Insights/components@2020-02-02' = {
  name: '${name}-insights'
  location: location
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
  }
}

// Ingestion is Entra-only (DisableLocalAuth): without this role the app's telemetry is refused.
resource insightsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(insights.id, identity.id, monitoringMetricsPublisher)
  scope: insights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// The secrets the app reads: its own (below, from the secure parameters) and the clusters'
// tokens, certificates and kubeconfigs that the pools' `clusters` section names.
resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109:The app reads its secrets over the public endpoint with its managed identity (RBAC, no access policies); a deny-by-default firewall needs private endpoints, which this template does not set up (docs/deploy.md)
  // checkov:skip=CKV_AZURE_189:Same reason: Flex Consumption resolves Key Vault references and the app's SDK reads secrets over the public endpoint unless a private endpoint exists
  name: vaultName
  location: location
  properties: {
    tenantId: subscription().tenantId
    sku: { family: 'A', name: 'standard' }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: { defaultAction: 'Allow', bypass: 'AzureServices' }
  }
}

resource vaultReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, identity.id, keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Whoever deploys puts the clusters' secrets in (az keyvault secret set): the data plane needs
// its own role, ARM rights on the vault are not enough.
resource vaultOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(secretsOfficerId)) {
  name: guid(vault.id, secretsOfficerId, keyVaultSecretsOfficer)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsOfficer)
    principalId: secretsOfficerId
  }
}

// A secure parameter left empty creates no secret, and its app setting stays empty.
var alertSecretGiven = empty(alertSecret) ? [] : [ { name: alertSecretName, value: alertSecret } ]
var notifyWebhookGiven = empty(notifyWebhook) ? [] : [ { name: notifyWebhookName, value: notifyWebhook } ]
var givenSecrets = concat(alertSecretGiven, notifyWebhookGiven)

resource secrets 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = [for secret in givenSecrets: {
  // checkov:skip=CKV_AZURE_41:An expiry would silently switch alert signing or notifications off; these change by setting the parameter again and provisioning (docs/deploy.md)
  parent: vault
  name: secret.name
  properties: { value: secret.value, contentType: 'text/plain' }
}]

// Versionless: the app picks up a new version of a secret without a change of its settings.
var secretReference = '@Microsoft.KeyVault(SecretUri=${vault.properties.vaultUri}secrets/'

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225:A zone outage costs a timer tick, not state: every job is resumable from storage, and zone redundancy is not offered in every region Flex Consumption runs in
  name: '${name}-plan'
  location: location
  kind: 'functionapp'
  sku: { tier: 'FlexConsumption', name: 'FC1' }
  properties: { reserved: true }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222:Azure Monitor action groups and Alertmanager must reach POST /api/alerts; every route but health needs an Entra sign-in (authsettingsV2) and an app role
  // checkov:skip=CKV_AZURE_17:People sign in with Entra ID (authsettingsV2) and alert senders with their own credentials; none presents a client certificate
  // checkov:skip=CKV_AZURE_212:Flex Consumption scales from zero per trigger; timers and queues lose nothing while an instance starts, and alert senders retry
  // checkov:skip=CKV_AZURE_213:Flex Consumption has no App Service health check to evict instances; /api/health serves external probes
  name: '${name}-${suffix}'
  location: location
  kind: 'functionapp,linux'
  tags: { 'azd-service-name': 'api' }
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identity.id}': {} }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    // Key Vault references resolve with this identity; there is no system-assigned one.
    keyVaultReferenceIdentity: identity.id
    virtualNetworkSubnetId: empty(subnetId) ? null : subnetId
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainer}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identity.id
          }
        }
      }
      scaleAndConcurrency: { maximumInstanceCount: 40, instanceMemoryMB: 2048 }
      runtime: { name: 'python', version: '3.11' }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [
        { name: 'AzureWebJobsStorage__accountName', value: storage.name }
        { name: 'AzureWebJobsStorage__credential', value: 'managedidentity' }
        { name: 'AzureWebJobsStorage__clientId', value: identity.properties.clientId }
        { name: 'AZURE_CLIENT_ID', value: identity.properties.clientId }
        { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: insights.properties.ConnectionString }
        { name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING', value: 'ClientId=${identity.properties.clientId};Authorization=AAD' }
        { name: 'POOLKEEPER_POOLS', value: poolsText }
        { name: 'POOLKEEPER_MODE', value: mode }
        { name: 'POOLKEEPER_KUBE_SERVER', value: kubeServer }
        { name: 'POOLKEEPER_KEY_VAULT_URL', value: vault.properties.vaultUri }
        { name: 'POOLKEEPER_ALERT_SECRET', value: empty(alertSecret) ? '' : '${secretReference}${alertSecretName})' }
        { name: 'POOLKEEPER_NOTIFY_WEBHOOK', value: empty(notifyWebhook) ? '' : '${secretReference}${notifyWebhookName})' }
        { name: 'POOLKEEPER_SCALE_QUEUE', value: 'scale-jobs' }
        { name: 'POOLKEEPER_DRAIN_QUEUE', value: 'drain-jobs' }
        { name: 'POOLKEEPER_RECONCILE_QUEUE', value: 'reconcile-jobs' }
        { name: 'POOLKEEPER_PATCH_QUEUE', value: 'patch-jobs' }
        { name: 'POOLKEEPER_IMAGE_QUEUE', value: 'image-jobs' }
        { name: 'POOLKEEPER_WEBHOOK_QUEUE', value: 'notify-webhook' }
        { name: 'RECONCILE_SCHEDULE', value: reconcileSchedule }
        { name: 'CAPACITY_SCHEDULE', value: '0 */5 * * * *' }
        { name: 'DOWNSCALE_SCHEDULE', value: '0 0 6 * * MON' }
        { name: 'PRUNE_SCHEDULE', value: '0 17 3 * * *' }
        { name: 'PATCH_SCHEDULE', value: '0 */15 * * * *' }
        { name: 'IMAGE_SCHEDULE', value: '0 42 0 * * *' }
        { name: 'POOLKEEPER_USAGE_SOURCE', value: usageSource }
        { name: 'POOLKEEPER_METRICS_ENDPOINT', value: 'https://${metricsRegion}.metrics.monitor.azure.com' }
        { name: 'POOLKEEPER_LOG_WORKSPACE', value: usesContainerInsights ? workspaceReader.outputs.customerId : '' }
      ]
    }
  }
  // The roles first: a Key Vault reference or an Entra-only ingestion that is refused at the
  // app's first start is only retried hours later.
  dependsOn: [ storageAccess, insightsPublisher, vaultReader, secrets ]
}

// Deployments go through Entra ID (azd, `az functionapp deployment` with a token), never with
// the site's basic publishing user and password.
resource noFtpPassword 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'ftp'
  properties: { allow: false }
}

resource noScmPassword 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'scm'
  properties: { allow: false }
}

// People sign in with Entra ID (Easy Auth) and the app checks their app roles (shared/auth.py).
// Health is excluded (anonymous); alert senders sign in too, with the role
// Poolkeeper.AlertSender. local/host/easyauth.py emulates this; tests hold the paths equal.
// Without a client id Easy Auth stays off (platform.enabled false), and so do people's routes.
resource signIn 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov:skip=CKV_AZURE_13:checkov reads only v1 authsettings (properties.enabled); this is authsettingsV2, on with platform.enabled once a client id is given
  // checkov:skip=CKV_AZURE_222:checkov takes every sites/config for the site's web config; public access is decided on the app (skipped there, with its reason)
  // checkov:skip=CKV_AZURE_63:checkov takes every sites/config for the site's web config; authsettingsV2 has no logging fields
  // checkov:skip=CKV_AZURE_65:checkov takes every sites/config for the site's web config; authsettingsV2 has no error-page fields
  // checkov:skip=CKV_AZURE_66:checkov takes every sites/config for the site's web config; authsettingsV2 has no tracing fields
  // checkov:skip=CKV_AZURE_80:checkov takes every sites/config for the site's web config; the app runs Python, not .NET
  // checkov:skip=CKV_AZURE_88:checkov takes every sites/config for the site's web config; authsettingsV2 has no storage mounts
  parent: app
  name: 'authsettingsV2'
  properties: {
    platform: { enabled: !empty(signInClientId) }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'Return401'
      excludedPaths: [ '/api/health' ]
    }
    httpSettings: { requireHttps: true }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: signInClientId
          openIdIssuer: '${environment().authentication.loginEndpoint}${signInTenantId}/v2.0'
        }
        validation: { allowedAudiences: [ 'api://${signInClientId}', signInClientId ] }
      }
    }
    login: { tokenStore: { enabled: false } }
  }
}

// The pools as azd delivered them; the app receives this text unchanged.
var poolsText = base64ToString(poolsB64)
var pools = json(poolsText).pools

// Where each pool's resource groups are, as '<subscription-id>/<resource-group>' (ARM ids:
// /subscriptions/<id>/resourceGroups/<name>/...). A pool's images go to its image.gallery, else
// to the gallery `poolkeeper` in its scale set's resource group (shared/flows/image/plan.py).
// union() drops repeats (ARM's idiom for distinct): one role per resource group, however many
// pools it holds. tests/unit/test_azd_parameters.py evaluates these for a pools file.
var galleryIds = [for pool in pools: union({ gallery: pool.vmss_id }, contains(pool, 'image') ? pool.image : {}).gallery]
var poolGroups = [for pool in pools: toLower(format('{0}/{1}', split(pool.vmss_id, '/')[2], split(pool.vmss_id, '/')[4]))]
var galleryGroups = [for id in galleryIds: toLower(format('{0}/{1}', split(id, '/')[2], split(id, '/')[4]))]
var networkGroups = [for entry in (empty(networkResourceGroups) ? [] : split(networkResourceGroups, ',')): toLower(trim(entry))]
var nodeScopes = union(poolGroups, poolGroups)
var galleryScopes = imageJobs ? union(galleryGroups, galleryGroups) : []
var networkScopes = union(networkGroups, networkGroups)
var identityEntries = [for entry in (empty(scaleSetIdentities) ? [] : split(scaleSetIdentities, ',')): toLower(trim(entry))]
var identityIds = union(identityEntries, identityEntries)
var identityGroups = [for id in identityIds: format('{0}/{1}', split(id, '/')[2], split(id, '/')[4])]
var identityScopes = union(identityGroups, identityGroups)
var snapshotGroups = [for pool in pools: toLower(format('{0}/{1}', split(pool.vmss_id, '/')[2], union({ snapshot_resource_group: split(pool.vmss_id, '/')[4] }, contains(pool, 'image') ? pool.image : {}).snapshot_resource_group))]
var snapshotScopes = imageJobs ? union(snapshotGroups, snapshotGroups) : []

// Exactly what the adapters call (tests/unit/test_infra.py maps each SDK call to its action;
// shared/decide/permissions.py holds the same lists for the preflight). On each pool's scale set,
// assigned there and nowhere wider (modules/scale-set-access.bicep):
var scaleSetActions = [
  'Microsoft.Compute/virtualMachineScaleSets/read'
  'Microsoft.Compute/virtualMachineScaleSets/write' // capacity up, image reference (with If-Match)
  'Microsoft.Compute/virtualMachineScaleSets/delete/action' // DeleteInstances: named, drained nodes
  'Microsoft.Compute/virtualMachineScaleSets/manualUpgrade/action' // roll an instance to the model
  'Microsoft.Compute/virtualMachineScaleSets/instanceView/read'
  'Microsoft.Compute/virtualMachineScaleSets/virtualMachines/read'
  'Microsoft.Compute/virtualMachineScaleSets/virtualMachines/instanceView/read'
  'Microsoft.Compute/virtualMachineScaleSets/virtualMachines/restart/action' // patch reboots
  'Microsoft.Compute/virtualMachineScaleSets/virtualMachines/reimage/action' // repair ladder
  'Microsoft.Compute/virtualMachineScaleSets/virtualMachines/start/action' // donor back after capture
  'Microsoft.Compute/virtualMachineScaleSets/virtualMachines/powerOff/action' // donor stopped for its snapshot
  'Microsoft.Compute/locations/operations/read' // long-running operations' status
]

// Root on the instances: only with patch jobs (the node check, installs) or image jobs (the
// donor's clean-up) on.
var runCommandActions = [
  'Microsoft.Compute/virtualMachineScaleSets/virtualMachines/runCommand/action'
]

// In each pool's resource group, with image jobs: the donor's OS disk, the snapshot's source.
var diskActions = [
  'Microsoft.Compute/disks/read'
]

// In each pool's snapshot resource group (image.snapshot_resource_group, else the scale set's),
// with image jobs: the donor's snapshot, made and deleted there.
var snapshotActions = [
  'Microsoft.Compute/snapshots/read'
  'Microsoft.Compute/snapshots/write'
  'Microsoft.Compute/snapshots/delete'
]

// What a model write references, checked by ARM on every write to a scale set: in the pools'
// resource groups and in networkResourceGroups. Usable only with a write the identity may make,
// i.e. on the pools' scale sets.
var referenceActions = [
  'Microsoft.Network/virtualNetworks/subnets/join/action'
  'Microsoft.Network/loadBalancers/backendAddressPools/join/action'
  'Microsoft.Network/networkSecurityGroups/join/action'
]

// On each identity the scale sets carry (scaleSetIdentities), at the identity only.
var identityActions = [
  'Microsoft.ManagedIdentity/userAssignedIdentities/assign/action'
]

// Prototype images: the gallery and definition are created on first use; versions come and go.
var galleryActions = [
  'Microsoft.Compute/galleries/read'
  'Microsoft.Compute/galleries/write'
  'Microsoft.Compute/galleries/images/read'
  'Microsoft.Compute/galleries/images/write'
  'Microsoft.Compute/galleries/images/versions/read'
  'Microsoft.Compute/galleries/images/versions/write'
  'Microsoft.Compute/galleries/images/versions/delete'
  'Microsoft.Compute/locations/operations/read'
]

module nodeAccess 'modules/access.bicep' = [for group in nodeScopes: {
  name: 'poolkeeper-node-access-${uniqueString(group)}'
  scope: resourceGroup(first(split(group, '/')), last(split(group, '/')))
  params: {
    principalId: identity.properties.principalId
    roleName: 'Poolkeeper node pools'
    roleDescription: 'What writes to the pools\' scale sets reference (subnets, load balancer pools, network security groups) and, with image jobs, a donor\'s OS disk.'
    actions: concat(referenceActions, imageJobs ? diskActions : [])
  }
  // Narrowed (an upgrade from group-wide roles) only once the scale sets and identities hold
  // their own.
  dependsOn: [ scaleSetAccess, identityAccess ]
}]

// The scale sets' own roles: defined once per resource group, assigned at each pool's scale set.
module scaleSetRoles 'modules/scale-set-roles.bicep' = [for group in nodeScopes: {
  name: 'poolkeeper-scale-set-roles-${uniqueString(group)}'
  scope: resourceGroup(first(split(group, '/')), last(split(group, '/')))
  params: {
    scaleSetActions: scaleSetActions
    runCommandActions: runCommandActions
  }
}]

module scaleSetAccess 'modules/scale-set-access.bicep' = [for pool in pools: {
  name: 'poolkeeper-scale-set-access-${uniqueString(pool.vmss_id, pool.name)}'
  scope: resourceGroup(split(pool.vmss_id, '/')[2], split(pool.vmss_id, '/')[4])
  params: {
    principalId: identity.properties.principalId
    scaleSetName: split(pool.vmss_id, '/')[8]
    patchJobs: patchJobs
    imageJobs: imageJobs
  }
  dependsOn: [ scaleSetRoles ]
}]

// The identity role: defined once per resource group of identities, assigned at each identity.
module identityRoles 'modules/identity-role.bicep' = [for group in identityScopes: {
  name: 'poolkeeper-identity-role-${uniqueString(group)}'
  scope: resourceGroup(first(split(group, '/')), last(split(group, '/')))
  params: {
    actions: identityActions
  }
}]

module identityAccess 'modules/identity-access.bicep' = [for id in identityIds: {
  name: 'poolkeeper-identity-access-${uniqueString(id)}'
  scope: resourceGroup(split(id, '/')[2], split(id, '/')[4])
  params: {
    principalId: identity.properties.principalId
    identityName: split(id, '/')[8]
  }
  dependsOn: [ identityRoles ]
}]

module snapshotAccess 'modules/access.bicep' = [for group in snapshotScopes: {
  name: 'poolkeeper-snapshot-access-${uniqueString(group)}'
  scope: resourceGroup(first(split(group, '/')), last(split(group, '/')))
  params: {
    principalId: identity.properties.principalId
    roleName: 'Poolkeeper snapshots'
    roleDescription: 'Image jobs: a donor\'s OS disk snapshot, made and deleted.'
    actions: snapshotActions
  }
}]

module galleryAccess 'modules/access.bicep' = [for group in galleryScopes: {
  name: 'poolkeeper-gallery-access-${uniqueString(group)}'
  scope: resourceGroup(first(split(group, '/')), last(split(group, '/')))
  params: {
    principalId: identity.properties.principalId
    roleName: 'Poolkeeper image gallery'
    roleDescription: 'Prototype images: gallery, image definitions and versions.'
    actions: galleryActions
  }
}]

module networkAccess 'modules/access.bicep' = [for group in networkScopes: {
  name: 'poolkeeper-network-access-${uniqueString(group)}'
  scope: resourceGroup(first(split(group, '/')), last(split(group, '/')))
  params: {
    principalId: identity.properties.principalId
    roleName: 'Poolkeeper scale set references'
    roleDescription: 'What a scale set model write references: subnets, load balancer pools, network security groups.'
    actions: referenceActions
  }
  // Narrowed on an upgrade (identities left it) only once the identities hold their own.
  dependsOn: [ identityAccess ]
}]

// Container Insights: read its workspace. Off, the module is skipped; its scope still has to be
// a valid id, so it falls back to Poolkeeper's own workspace.
var insightsWorkspaceId = empty(logWorkspaceResourceId) ? workspace.id : logWorkspaceResourceId

module workspaceReader 'modules/workspace-reader.bicep' = if (usesContainerInsights) {
  name: 'poolkeeper-workspace-reader'
  scope: resourceGroup(split(insightsWorkspaceId, '/')[2], split(insightsWorkspaceId, '/')[4])
  params: {
    workspaceName: last(split(insightsWorkspaceId, '/'))
    principalId: identity.properties.principalId
  }
}

// The capacity defaults (shared/config/capacity.py CapacitySettings; tests/unit/test_alert_rules.py holds
// them equal); a pool's own `capacity` section overrides them, as it does in the product.
var capacityDefaults = { p1_cpu: 95, p1_memory: 85, p2_cpu: 75, p2_memory: 75 }

// A Secure Webhook: Azure Monitor sends an Entra ID token for the app registration (its AzNS
// AAD Webhook service principal holds Poolkeeper.AlertSender); no key is in the URL.
var alerting = deployAlertRules && !empty(signInClientId) && !empty(signInAppObjectId)

resource alertsGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (alerting) {
  name: '${name}-alerts'
  location: 'Global'
  properties: {
    groupShortName: 'poolkeeper'
    enabled: true
    webhookReceivers: [
      {
        name: 'poolkeeper'
        serviceUri: 'https://${app.properties.defaultHostName}/api/alerts'
        useCommonAlertSchema: true
        useAadAuth: true
        objectId: signInAppObjectId
        identifierUri: 'api://${signInClientId}'
        tenantId: signInTenantId
      }
    ]
  }
}

module poolAlerts 'modules/pool-alerts.bicep' = [for pool in (alerting ? pools : []): {
  name: 'poolkeeper-alerts-${pool.name}'
  params: {
    pool: pool.name
    vmssId: pool.vmss_id
    thresholds: union(capacityDefaults, contains(pool, 'capacity') ? pool.capacity : {})
    actionGroupId: alertsGroup.id
  }
}]

output appName string = app.name
output identityClientId string = identity.properties.clientId
output identityPrincipalId string = identity.properties.principalId
output appUrl string = 'https://${app.properties.defaultHostName}'
output keyVaultName string = vault.name
