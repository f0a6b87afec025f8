// Poolkeeper in Azure: a Flex Consumption Function App (Python 3.11) with a user-assigned
// managed identity, its Storage account (identity-based, no shared keys) and Application Insights.
// The identity may manage the scale sets in the cluster's node resource group and read their
// metrics; nothing else.

targetScope = 'resourceGroup'

@description('Azure region for every resource.')
param location string = resourceGroup().location

@description('Base name for the resources (lowercase letters and digits).')
@minLength(3)
@maxLength(16)
param name string = 'poolkeeper'

@description('The pools Poolkeeper manages, as JSON (docs/configuration.md): the allow-list.')
param poolsJson string

@description('Resource group holding the node pools\' scale sets (the AKS node resource group).')
param nodeResourceGroup string

@description('API server URL of the AKS cluster (Entra ID integration); see docs/drain.md.')
param kubeServer string

@description('Schedule of the reconcile timer (6-field NCRONTAB, UTC).')
param reconcileSchedule string = '0 */5 * * * *'

var suffix = uniqueString(resourceGroup().id, name)
var storageName = take('${name}${suffix}', 24)
var deploymentContainer = 'app-package'

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: '${name}-id'
  location: location
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
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
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
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

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: '${name}-plan'
  location: location
  kind: 'functionapp'
  sku: { tier: 'FlexConsumption', name: 'FC1' }
  properties: { reserved: true }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
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
      appSettings: [
        { name: 'AzureWebJobsStorage__accountName', value: storage.name }
        { name: 'AzureWebJobsStorage__credential', value: 'managedidentity' }
        { name: 'AzureWebJobsStorage__clientId', value: identity.properties.clientId }
        { name: 'AZURE_CLIENT_ID', value: identity.properties.clientId }
        { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: insights.properties.ConnectionString }
        { name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING', value: 'ClientId=${identity.properties.clientId};Authorization=AAD' }
        { name: 'POOLKEEPER_POOLS', value: poolsJson }
        { name: 'POOLKEEPER_KUBE_SERVER', value: kubeServer }
        { name: 'POOLKEEPER_SCALE_QUEUE', value: 'scale-jobs' }
        { name: 'POOLKEEPER_DRAIN_QUEUE', value: 'drain-jobs' }
        { name: 'POOLKEEPER_RECONCILE_QUEUE', value: 'reconcile-jobs' }
        { name: 'POOLKEEPER_PATCH_QUEUE', value: 'patch-jobs' }
        { name: 'RECONCILE_SCHEDULE', value: reconcileSchedule }
        { name: 'CAPACITY_SCHEDULE', value: '0 */5 * * * *' }
        { name: 'DOWNSCALE_SCHEDULE', value: '0 0 6 * * MON' }
        { name: 'PATCH_SCHEDULE', value: '0 */15 * * * *' }
        { name: 'POOLKEEPER_METRICS_ENDPOINT', value: 'https://${location}.metrics.monitor.azure.com' }
      ]
    }
  }
  dependsOn: [ storageAccess ]
}

module nodeAccess 'modules/node-access.bicep' = {
  name: 'poolkeeper-node-access'
  scope: resourceGroup(nodeResourceGroup)
  params: {
    principalId: identity.properties.principalId
  }
}

output appName string = app.name
output identityClientId string = identity.properties.clientId
output identityPrincipalId string = identity.properties.principalId
